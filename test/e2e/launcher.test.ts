import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, test } from 'vitest'
import { connectionError } from '../../packages/local-postgres/src/index.ts'
import { launch, ROOT, StartError } from '../../scripts/start/system.ts'
import { allHealthy } from '../lib/contract.ts'
import { freePort, waitFor } from './helpers.ts'

// `pnpm start` itself: the command-line launcher as a real process, and how the launcher fails.

const dataDirs: string[] = []
afterAll(async () => {
  await Promise.all(dataDirs.map((dir) => rm(dir, { recursive: true, force: true })))
})

async function tempDir() {
  const dir = await mkdtemp(join(tmpdir(), 'task-manager-launcher-'))
  dataDirs.push(dir)
  return dir
}

const isFree = (port: number) =>
  new Promise<boolean>((resolve) => {
    const server = createServer()
    server.once('error', () => resolve(false))
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)))
  })

/** A base port N with N…N+3 free (the launcher's --base-port layout). */
async function freeBasePort(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 20_000)
    const free = await Promise.all([0, 1, 2, 3].map((offset) => isFree(base + offset)))
    if (free.every(Boolean)) return base
  }
  throw new Error('no four consecutive free ports')
}

/** A free client port N for nats-server whose monitoring port N+4000 is free too. */
async function freeNatsPort(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 20_000)
    if ((await isFree(port)) && (await isFree(port + 4000))) return port
  }
  throw new Error('no free port pair for nats-server')
}

/** Pids of the service processes (Linux /proc) whose PORT is one of `ports`. */
async function serviceProcesses(ports: number[]): Promise<number[]> {
  const found: number[] = []
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8')
      if (!cmdline.includes('exit-with-launcher.mjs')) continue
      const environ = (await readFile(`/proc/${entry}/environ`, 'utf8')).split('\0')
      if (ports.some((port) => environ.includes(`PORT=${port}`))) found.push(Number(entry))
    } catch {
      // gone meanwhile
    }
  }
  return found
}

function startCli(args: string[]): { child: ChildProcess; output: () => string } {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', '--conditions=@task-manager/source', 'scripts/start/main.ts', ...args],
    {
      cwd: ROOT,
      env: { ...process.env, PASSWORD_SCRYPT_LOG_N: '12', NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  )
  let output = ''
  child.stdout?.on('data', (chunk) => {
    output += chunk
  })
  child.stderr?.on('data', (chunk) => {
    output += chunk
  })
  return { child, output: () => output }
}

/** A data directory of its own and free ports for all it starts: the launcher's arguments and what they name. */
async function ownPlaces() {
  const dataDir = await tempDir()
  const base = await freeBasePort()
  const postgresPort = await freePort()
  const natsPort = await freeNatsPort()
  const args = [
    '--data-dir',
    dataDir,
    '--base-port',
    String(base),
    '--postgres-port',
    String(postgresPort),
    '--nats-port',
    String(natsPort),
  ]
  return { dataDir, base, postgresPort, natsPort, args }
}

const readyBanner = (cli: { output: () => string }) =>
  waitFor('the ready banner', async () => cli.output().includes('Task Manager is running'), 90_000)

describe('pnpm start', () => {
  test('starts everything with progress and a ready banner, isolates the databases, stops in order on SIGINT', async () => {
    const { dataDir, base, postgresPort, natsPort, args } = await ownPlaces()
    const cli = startCli(args)
    try {
      await readyBanner(cli)
      const output = cli.output()
      for (const step of [
        'PostgreSQL: ready',
        'NATS: ready',
        'migrations: up to date',
        'services: all ready',
      ]) {
        expect(output).toContain(step)
      }
      // NATS with JetStream, its store in the data directory; every service and the gateway connected.
      expect(output).toContain(`NATS (JetStream)   nats://127.0.0.1:${natsPort}`)
      const jsz = (await (await fetch(`http://127.0.0.1:${natsPort + 4000}/jsz`)).json()) as {
        config: { store_dir: string }
      }
      expect(jsz.config.store_dir).toContain(join(dataDir, 'nats'))
      const connz = (await (await fetch(`http://127.0.0.1:${natsPort + 4000}/connz`)).json()) as {
        connections: { name?: string }[]
      }
      const clients = connz.connections.map((connection) => connection.name).sort()
      expect(clients).toEqual(['gateway', 'project-service', 'task-service', 'user-service'])
      expect(output).toContain('auth mode: required')
      expect(output).toContain(`curl -s localhost:${base + 3}/auth/token`)
      // Interleaved, compact service logs with their prefix.
      expect(output).toMatch(/^gateway\s+│ \d\d:\d\d:\d\d\.\d{3} INFO /m)

      const health = await fetch(`http://127.0.0.1:${base + 3}/health`)
      expect(await health.json()).toEqual(allHealthy)

      // A second launcher on the same data directory refuses instead of taking the database over.
      const second = startCli(['--data-dir', dataDir, '--base-port', String(await freeBasePort())])
      expect((await once(second.child, 'exit'))[0]).toBe(1)
      expect(second.output()).toMatch(/another launcher \(pid \d+\) is using/)

      // One role per database; no role can open another service's database.
      const url = async (role: string, database: string) => {
        const password = (await readFile(join(dataDir, `${role}-password`), 'utf8')).trim()
        return `postgres://${role}:${encodeURIComponent(password)}@127.0.0.1:${postgresPort}/${database}`
      }
      expect(await connectionError(await url('task_service', 'tasks'))).toBeUndefined()
      expect(await connectionError(await url('task_service', 'users'))).toMatch(/permission denied/)
      expect(await connectionError(await url('user_service', 'projects'))).toMatch(/permission denied/)
      expect(await connectionError(await url('project_service', 'tasks'))).toMatch(/permission denied/)
      expect(await connectionError(await url('project_service', 'postgres'))).toMatch(/permission denied/)

      const exited = once(cli.child, 'exit')
      cli.child.kill('SIGINT')
      const [code] = await exited
      expect(code).toBe(0)
      const shutdown = cli.output().slice(output.length)
      // The services stop first (the gateway before the rest), NATS and PostgreSQL last.
      expect(shutdown.indexOf('gateway')).toBeLessThan(shutdown.indexOf('shutdown complete'))
      expect(shutdown.match(/shutdown complete/g)).toHaveLength(4)
      expect(shutdown).toMatch(/stopped in \d+ ms/)
      for (const offset of [0, 1, 2, 3]) expect(await isFree(base + offset)).toBe(true)
      expect(await isFree(postgresPort)).toBe(true)
      expect(await isFree(natsPort)).toBe(true)
    } finally {
      if (cli.child.exitCode === null) {
        const exited = once(cli.child, 'exit')
        cli.child.kill('SIGTERM')
        await exited
      }
    }
  }, 120_000)

  test('killed with SIGKILL, its services stop on their own; the next start takes over the database it left', async () => {
    const { base, postgresPort, natsPort, args } = await ownPlaces()
    const first = startCli(args)
    await readyBanner(first)
    const exited = once(first.child, 'exit')
    first.child.kill('SIGKILL')
    await exited
    const ports = [0, 1, 2, 3].map((offset) => base + offset)
    expect(await serviceProcesses(ports)).toHaveLength(4)
    const stoppedIn = await waitFor(
      'the orphaned services to exit',
      async () => (await serviceProcesses(ports)).length === 0,
      10_000,
    )
    console.log(`services stopped ${stoppedIn} ms after their launcher was killed`)
    expect(await isFree(postgresPort)).toBe(false) // PostgreSQL outlives it (it is not ours to preload)
    expect(await isFree(natsPort)).toBe(false) // and so does nats-server

    const second = startCli(args)
    try {
      await readyBanner(second)
      expect(second.output()).toContain('stopping a PostgreSQL server left running on this data directory')
      expect(second.output()).toContain('stopping a nats-server left running on this data directory')
    } finally {
      const done = once(second.child, 'exit')
      second.child.kill('SIGTERM')
      expect((await done)[0]).toBe(0)
    }
    expect(await isFree(postgresPort)).toBe(true)
    expect(await isFree(natsPort)).toBe(true)
  }, 150_000)

  test('refuses unknown options with its usage', async () => {
    const cli = startCli(['--auth', 'sometimes'])
    const [code] = await once(cli.child, 'exit')
    expect(code).toBe(64)
    expect(cli.output()).toContain('--auth must be required or disabled')
    expect(cli.output()).toContain('Usage: pnpm start')
  })
})

describe('a service that cannot start', () => {
  async function ports() {
    return {
      'task-service': await freePort(),
      'user-service': await freePort(),
      'project-service': await freePort(),
      gateway: await freePort(),
    }
  }

  test('is named with its last log lines, and everything else is stopped', async () => {
    const taken = await ports()
    const postgresPort = await freePort()
    // Something else holds the task-service's port (and never answers HTTP).
    const squatter = createServer((socket) => socket.destroy())
    await new Promise<void>((resolve) => squatter.listen(taken['task-service'], '127.0.0.1', resolve))
    try {
      const failure = await launch({
        dataDir: await tempDir(),
        ports: taken,
        postgresPort,
        postgresSettings: { fsync: 'off' },
      }).then(
        () => undefined,
        (error: unknown) => error,
      )
      expect(failure).toBeInstanceOf(StartError)
      const error = failure as StartError
      expect(error.service).toBe('task-service')
      expect(error.message).toMatch(/^task-service exited during start/)
      expect(error.lastLines.join('\n')).toContain('EADDRINUSE')
      const others = [taken['user-service'], taken['project-service'], taken.gateway, postgresPort]
      for (const port of others) expect(await isFree(port)).toBe(true)
    } finally {
      squatter.close()
    }
  }, 120_000)

  test('a configuration its migrations refuse is named before any service starts', async () => {
    const postgresPort = await freePort()
    const failure = await launch({
      dataDir: await tempDir(),
      ports: await ports(),
      postgresPort,
      postgresSettings: { fsync: 'off' },
      // Below the schema's minimum: the task-service refuses its configuration.
      env: { 'task-service': { PROJECT_SERVICE_TIMEOUT_MS: '1' } },
    }).then(
      () => undefined,
      (error: unknown) => error,
    )
    expect(failure).toBeInstanceOf(StartError)
    expect((failure as StartError).service).toBe('task-service')
    expect((failure as StartError).message).toMatch(/migrations of task-service failed/)
    expect((failure as StartError).lastLines.join('\n')).toContain('PROJECT_SERVICE_TIMEOUT_MS')
    expect(await isFree(postgresPort)).toBe(true)
  }, 120_000)
})
