import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort } from '../../packages/testing/src/postgres.ts'
import {
  type LaunchOptions,
  launch,
  type RunningSystem,
  type ServiceName,
  StartError,
} from '../../scripts/start/system.ts'

export { signUp } from '../lib/accounts.ts'

export { freePort }

export interface TestSystem extends RunningSystem {
  dataDir: string
  /** Every output line of every service, prefixed with its name (for failure messages). */
  logs: string[]
  api: Api
  /** Stops everything and removes the data directory. */
  destroy(): Promise<void>
}

export interface Answer<T = unknown> {
  status: number
  headers: Headers
  body: T
  ms: number
}

export type Api = <T = any>(
  method: string,
  path: string,
  options?: { token?: string; body?: unknown; headers?: Record<string, string>; timeoutMs?: number },
) => Promise<Answer<T>>

/** A JSON client of one base URL; measures each call. */
export function client(baseUrl: string): Api {
  return async (method, path, options = {}) => {
    const headers: Record<string, string> = { ...options.headers }
    if (options.token) headers.authorization = `Bearer ${options.token}`
    if (options.body !== undefined) headers['content-type'] ??= 'application/json'
    const started = performance.now()
    const response = await fetch(`${baseUrl}${path}`, {
      method,
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      signal: AbortSignal.timeout(options.timeoutMs ?? 15_000),
    })
    const text = await response.text()
    const ms = performance.now() - started
    let body: any = text
    if (text && (response.headers.get('content-type') ?? '').includes('json')) body = JSON.parse(text)
    return { status: response.status, headers: response.headers, body, ms }
  }
}

/**
 * The whole system as `pnpm start` runs it, on free ports of 127.0.0.1 with a throw-away data directory,
 * so it never collides with a `pnpm start` running on the same machine.
 */
export async function startSystem(
  options: Omit<LaunchOptions, 'ports' | 'postgresPort' | 'host'> & { dataDir?: string } = {},
): Promise<TestSystem> {
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'task-manager-e2e-')))
  const names: ServiceName[] = ['task-service', 'user-service', 'project-service', 'gateway']
  const logs: string[] = []
  // Load shedding (503 while the event loop lags past MAX_EVENT_LOOP_DELAY_MS, 1 s by default) is the kit's
  // and is tested there; here, on a 2-core CI machine running the fuzzer, browsers and other suites at once, a
  // lag past 1 s is the machine's and a shed request would fail a test about something else. A test may set
  // its own threshold.
  const shedOnlyPast5s = { MAX_EVENT_LOOP_DELAY_MS: '5000' }
  const fast = Object.fromEntries(
    names.map((name) => [
      name,
      {
        ...shedOnlyPast5s,
        // Registration and login cost about a second each with production scrypt on a 2-core machine.
        ...(name === 'user-service' ? { PASSWORD_SCRYPT_LOG_N: '12' } : {}),
        ...options.env?.[name],
      },
    ]),
  )
  const system = await (async (): Promise<RunningSystem> => {
    for (let attempt = 1; ; attempt++) {
      // Free when asked for, but nothing holds them until the servers listen: another process (an outgoing
      // connection's source port, another suite's server) can take one in between.
      const ports = Object.fromEntries(await Promise.all(names.map(async (name) => [name, await freePort()])))
      try {
        return await launch({
          ...options,
          dataDir,
          host: '127.0.0.1',
          ports,
          postgresPort: await freePort(),
          postgresSettings: { fsync: 'off', ...options.postgresSettings },
          env: { ...options.env, ...fast },
          onLog: (service, line) => {
            logs.push(`${service} | ${line}`)
            if (logs.length > 5000) logs.shift()
            if (process.env.E2E_LOGS) console.log(`${service} | ${line}`)
            options.onLog?.(service, line)
          },
        })
      } catch (error) {
        if (!(error instanceof StartError)) throw error
        const lines = error.lastLines.map((line) => `${error.service} | ${line}`).join('\n')
        // The port race above, and only it, is worth another try with other ports (launch stopped what it started).
        if (attempt < 3 && lines.includes('EADDRINUSE')) {
          console.warn(
            `startSystem: a port was taken before ${error.service} listened; again with other ports`,
          )
          continue
        }
        // The lines say why (a failed migration, a refused connection): a StartError alone does not print them.
        throw new Error(`${error.message}; its last output:\n${lines}`, { cause: error })
      }
    }
  })()
  return {
    ...system,
    dataDir,
    logs,
    api: client(system.gatewayUrl),
    destroy: async () => {
      await system.stop()
      await rm(dataDir, { recursive: true, force: true })
    },
  }
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN
}

/** Polls `check` every 50 ms until it returns true; throws after `timeoutMs`. Returns the time it took. */
export async function waitFor(
  what: string,
  check: () => Promise<boolean>,
  timeoutMs = 15_000,
): Promise<number> {
  const started = Date.now()
  for (;;) {
    try {
      if (await check()) return Date.now() - started
    } catch {
      // not yet
    }
    if (Date.now() - started > timeoutMs)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(50)
  }
}
