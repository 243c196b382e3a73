import { randomBytes, type ScryptOptions, scrypt, timingSafeEqual } from 'node:crypto'
import { availableParallelism } from 'node:os'
import { HttpProblem, problemType } from '@task-manager/service-kit'
import PQueue from 'p-queue'

export interface ScryptParameters {
  /** log2 of the CPU/memory cost N. */
  logN: number
  /** Block size r. */
  r: number
  /** Parallelism p. */
  p: number
}

const KEY_LENGTH = 32
const SALT_LENGTH = 16

function derive(password: string, salt: Buffer, { logN, r, p }: ScryptParameters): Promise<Buffer> {
  const N = 2 ** logN
  // Node refuses above `maxmem` (32 MiB default); allow what these parameters need, plus headroom.
  const options: ScryptOptions = { N, r, p, maxmem: 128 * N * r * 2 }
  return new Promise((resolve, reject) => {
    scrypt(password.normalize('NFC'), salt, KEY_LENGTH, options, (error, key) =>
      error ? reject(error) : resolve(key),
    )
  })
}

export interface HashQueueOptions {
  /** Hashes computed at once; default: the CPUs, leaving one libuv worker thread for everything else. */
  concurrency?: number
  /** Hashes waiting for a turn; past this a request is refused at once (503) rather than queued. */
  maxWaiting?: number
}

/** libuv's worker threads (scrypt, DNS lookups and file reads share them). */
const THREADPOOL_SIZE = Number(process.env.UV_THREADPOOL_SIZE) || 4

export function defaultHashConcurrency(): number {
  return Math.max(1, Math.min(availableParallelism(), THREADPOOL_SIZE - 1))
}

/**
 * Password hashing with scrypt (memory-hard, in node:crypto, so no native build). Defaults follow the
 * OWASP Password Storage Cheat Sheet's scrypt option N=2^15, r=8, p=3 (32 MiB, a few tens of ms).
 * Stored as `scrypt$logN$r$p$salt$hash` (base64url), so the parameters can be raised later: a hash made
 * with weaker ones is upgraded at the next successful login.
 */
export class PasswordHasher {
  /** A hash of a random password, verified against for unknown emails so they cost the same time. */
  private readonly decoy: Promise<string>
  /**
   * Every scrypt run goes through this bounded queue. Unbounded, 40 concurrent logins would hold all of
   * libuv's worker threads for seconds — the database pool's connects and DNS lookups wait behind them
   * and the service's other requests fail — and queue for longer than any client waits.
   */
  private readonly queue: PQueue
  private readonly maxWaiting: number

  constructor(
    readonly parameters: ScryptParameters,
    queue: HashQueueOptions = {},
  ) {
    const concurrency = queue.concurrency ?? defaultHashConcurrency()
    this.queue = new PQueue({ concurrency })
    this.maxWaiting = queue.maxWaiting ?? concurrency * 4
    this.decoy = this.hash(randomBytes(18).toString('base64url'))
    this.decoy.catch(() => {})
  }

  /** Hashes running and waiting. */
  get load(): { running: number; waiting: number } {
    return { running: this.queue.pending, waiting: this.queue.size }
  }

  /** Runs one scrypt derivation in turn, or refuses at once with 503 + Retry-After when the queue is full. */
  private derive(password: string, salt: Buffer, parameters: ScryptParameters): Promise<Buffer> {
    if (this.queue.size >= this.maxWaiting) {
      throw new HttpProblem(503, 'Too many password checks in progress; retry shortly', {
        type: problemType('overloaded'),
        headers: { 'retry-after': 1 },
      })
    }
    return this.queue.add(() => derive(password, salt, parameters))
  }

  async hash(password: string): Promise<string> {
    const salt = randomBytes(SALT_LENGTH)
    const key = await this.derive(password, salt, this.parameters)
    const { logN, r, p } = this.parameters
    return ['scrypt', logN, r, p, salt.toString('base64url'), key.toString('base64url')].join('$')
  }

  /** True when `password` matches `stored`; with `stored` null, spends the same time and answers false. */
  async verify(password: string, stored: string | null): Promise<boolean> {
    const target = stored ?? (await this.decoy)
    const [scheme, logN, r, p, salt, expected] = target.split('$')
    if (scheme !== 'scrypt' || !salt || !expected) throw new Error('Unrecognised password hash format')
    const key = await this.derive(password, Buffer.from(salt, 'base64url'), {
      logN: Number(logN),
      r: Number(r),
      p: Number(p),
    })
    const match = timingSafeEqual(key, Buffer.from(expected, 'base64url'))
    return stored !== null && match
  }

  /** True when `stored` was made with other parameters than the current ones. */
  needsRehash(stored: string): boolean {
    const { logN, r, p } = this.parameters
    return !stored.startsWith(`scrypt$${logN}$${r}$${p}$`)
  }
}
