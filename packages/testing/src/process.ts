import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { freePort } from '@task-manager/local-postgres'

export interface SpawnedEntry {
  child: ChildProcess
  /** Everything the process wrote to stdout and stderr so far, interleaved. */
  output: () => string
  /** What it wrote to stdout alone. */
  stdout: () => string
  /** What it wrote to stderr alone. */
  stderr: () => string
  /** Resolves with the exit code (null when killed by a signal). */
  exited: Promise<number | null>
}

/**
 * Runs a TypeScript entry point (a service's src/server.ts or src/migrate.ts) as its own OS process,
 * through tsx, with the workspace packages resolved to their sources. Listens on 127.0.0.1 by default.
 * A process still running after `timeoutMs` (default: none) is killed with SIGKILL.
 */
export function spawnEntry(
  entry: string,
  env: Record<string, string>,
  options: { args?: string[]; timeoutMs?: number } = {},
): SpawnedEntry {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', '--conditions=@task-manager/source', entry, ...(options.args ?? [])],
    {
      env: { ...process.env, HOST: '127.0.0.1', LOG_LEVEL: 'info', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  )
  let text = ''
  let out = ''
  let err = ''
  child.stdout?.on('data', (chunk) => {
    text += chunk
    out += chunk
  })
  child.stderr?.on('data', (chunk) => {
    text += chunk
    err += chunk
  })
  const timer =
    options.timeoutMs === undefined ? undefined : setTimeout(() => child.kill('SIGKILL'), options.timeoutMs)
  const exited = once(child, 'exit').then(([code]) => {
    clearTimeout(timer)
    return code as number | null
  })
  return { child, output: () => text, stdout: () => out, stderr: () => err, exited }
}

export interface ServiceProcess extends SpawnedEntry {
  url: string
  /** SIGTERM (unless already exited), then the exit code. */
  stop: () => Promise<number | null>
}

/**
 * Starts a service's server entry on a free port (or env.PORT) and waits until `readyPath` answers 200.
 * A process that exits early or is not ready within `timeoutMs` fails the caller with its output.
 */
export async function startServiceProcess(
  entry: string,
  env: Record<string, string>,
  options: { name?: string; readyPath?: string; timeoutMs?: number } = {},
): Promise<ServiceProcess> {
  const name = options.name ?? entry
  const port = env.PORT ? Number(env.PORT) : await freePort()
  const spawned = spawnEntry(entry, { ...env, PORT: String(port) })
  const url = `http://127.0.0.1:${port}`
  const deadline = Date.now() + (options.timeoutMs ?? 20_000)
  for (;;) {
    if (spawned.child.exitCode !== null) throw new Error(`${name} exited early:\n${spawned.output()}`)
    try {
      const response = await fetch(`${url}${options.readyPath ?? '/health/ready'}`)
      await response.body?.cancel()
      if (response.status === 200) break
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      spawned.child.kill('SIGKILL')
      throw new Error(`${name} did not become ready:\n${spawned.output()}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  return {
    ...spawned,
    url,
    stop: async () => {
      if (spawned.child.exitCode === null) spawned.child.kill('SIGTERM')
      return spawned.exited
    },
  }
}
