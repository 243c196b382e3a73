import { execFile, spawn } from 'node:child_process'

export interface RunOptions {
  /** Default 120 s: every command has a deadline. */
  timeoutMs?: number
  input?: string
  env?: NodeJS.ProcessEnv
  cwd?: string
  /** Return the failure instead of throwing. */
  allowFailure?: boolean
}

export interface RunResult {
  code: number
  stdout: string
  stderr: string
  ms: number
}

/** Runs a command with a deadline; throws with its output when it fails (unless allowFailure). */
export function run(command: string, args: string[], options: RunOptions = {}): Promise<RunResult> {
  const started = Date.now()
  return new Promise((resolve, reject) => {
    const child = execFile(
      command,
      args,
      {
        timeout: options.timeoutMs ?? 120_000,
        killSignal: 'SIGKILL',
        maxBuffer: 64 * 1024 * 1024,
        env: options.env ?? process.env,
        cwd: options.cwd,
      },
      (error, stdout, stderr) => {
        const result = {
          code: error ? (typeof error.code === 'number' ? error.code : 1) : 0,
          stdout: String(stdout),
          stderr: String(stderr),
          ms: Date.now() - started,
        }
        if (error && !options.allowFailure) {
          const why = error.killed
            ? `timed out after ${options.timeoutMs ?? 120_000} ms`
            : `exit ${result.code}`
          reject(
            new Error(
              `${command} ${args.join(' ')}: ${why}\n${result.stderr.slice(-3000)}${result.stdout.slice(-2000)}`,
            ),
          )
        } else resolve(result)
      },
    )
    if (options.input !== undefined) child.stdin?.end(options.input)
  })
}

/** Runs a long command, streaming its output prefixed, with a deadline. */
export function stream(
  prefix: string,
  command: string,
  args: string[],
  options: RunOptions = {},
): Promise<number> {
  const started = Date.now()
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      env: options.env ?? process.env,
      cwd: options.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    const tail: string[] = []
    const onData = (chunk: Buffer) => {
      for (const line of chunk.toString().split('\n')) {
        if (!line) continue
        tail.push(line)
        if (tail.length > 40) tail.shift()
        if (process.env.CLUSTER_TEST_VERBOSE) console.log(`[${prefix}] ${line}`)
      }
    }
    child.stdout.on('data', onData)
    child.stderr.on('data', onData)
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 600_000)
    child.on('close', (code) => {
      clearTimeout(timer)
      if (code === 0 || options.allowFailure) resolve(Date.now() - started)
      else reject(new Error(`${prefix}: ${command} ${args.join(' ')} failed (${code}):\n${tail.join('\n')}`))
    })
  })
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Polls `check` until it returns a truthy value; throws `what` with the last error after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false>,
  timeoutMs: number,
  intervalMs = 1000,
): Promise<T> {
  const started = Date.now()
  let last: unknown
  for (;;) {
    try {
      const value = await check()
      if (value) return value
    } catch (error) {
      last = error
    }
    if (Date.now() - started > timeoutMs) {
      throw new Error(
        `timed out after ${Math.round(timeoutMs / 1000)} s waiting for ${what}${last ? `: ${String(last)}` : ''}`,
      )
    }
    await sleep(intervalMs)
  }
}
