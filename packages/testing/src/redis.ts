import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { once } from 'node:events'
import { freePort } from './postgres.js'

/**
 * True when Debian's redis-server is installed. With REQUIRE_REDIS=1 (CI) a missing server is an error,
 * so the Redis tests can never be skipped there.
 */
export function redisServerAvailable(): boolean {
  let available = true
  try {
    execFileSync('redis-server', ['--version'], { stdio: 'ignore' })
  } catch {
    available = false
  }
  if (!available && process.env.REQUIRE_REDIS === '1') {
    throw new Error('REQUIRE_REDIS=1 but redis-server is not installed (apt-get install redis-server)')
  }
  return available
}

export interface RedisServer {
  url: string
  child: ChildProcess
  /** Stops the server (SIGTERM unless told otherwise) and waits for it to exit. */
  stop(signal?: NodeJS.Signals): Promise<void>
}

/** A throw-away redis-server on 127.0.0.1 (no persistence), ready to accept connections. */
export async function startRedis(): Promise<RedisServer> {
  const port = await freePort()
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  )
  await new Promise<void>((resolve, reject) => {
    let out = ''
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString()
      if (out.includes('Ready to accept connections')) resolve()
    })
    child.once('exit', (code) => reject(new Error(`redis-server exited with ${code}: ${out}`)))
  })
  child.stdout?.resume()
  return {
    url: `redis://127.0.0.1:${port}`,
    child,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode !== null || child.signalCode !== null) return
      const exited = once(child, 'exit')
      child.kill(signal)
      await exited
    },
  }
}
