import PQueue from 'p-queue'
import { HttpProblem, problemType } from './problem.js'

export interface BulkheadOptions {
  /** Tasks run at once. */
  concurrency: number
  /** Tasks waiting for a turn; one more is refused at once. */
  maxWaiting: number
  /** The 503's detail, e.g. "Too many searches in progress; retry shortly". */
  refusal: string
}

/**
 * A bounded queue in front of expensive work (scrypt, a text search): at most `concurrency` run, at most
 * `maxWaiting` wait, and past that the request is refused at once with 503 + Retry-After — rather than
 * queueing without bound, holding every worker thread or pool connection and timing out anyway.
 */
export class Bulkhead {
  private readonly queue: PQueue

  constructor(private readonly options: BulkheadOptions) {
    this.queue = new PQueue({ concurrency: options.concurrency })
  }

  get running(): number {
    return this.queue.pending
  }

  get waiting(): number {
    return this.queue.size
  }

  run<T>(work: () => Promise<T>): Promise<T> {
    if (this.queue.size >= this.options.maxWaiting) {
      return Promise.reject(
        new HttpProblem(503, this.options.refusal, {
          type: problemType('overloaded'),
          headers: { 'retry-after': 1 },
        }),
      )
    }
    return this.queue.add(work)
  }
}
