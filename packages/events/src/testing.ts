// Test helpers: what a service published, as a test sees it. Import from '@task-manager/events/testing'
// in tests only.
import { EventBus } from './bus.js'
import type { EventType, STREAMS } from './catalog.js'
import type { EventEnvelope } from './envelope.js'
import { EventFollower } from './follow.js'

export interface EventRecorder {
  /** Every event of the followed types received so far, in stream order. */
  readonly seen: EventEnvelope[]
  /** The recorder's own connection; a test may publish on it too. */
  readonly bus: EventBus
  /** Stops following and closes the connection. */
  close(): Promise<void>
}

/**
 * Follows `types` on `stream` (replaying the last hour, so nothing published before it attached is
 * missed) and records each event in `seen`.
 */
export function startEventRecorder(options: {
  url: string
  stream: (typeof STREAMS)[keyof typeof STREAMS]
  types: EventType[]
}): EventRecorder {
  const seen: EventEnvelope[] = []
  const bus = new EventBus({ url: options.url, name: 'test' })
  const follower = new EventFollower({
    bus,
    name: 'test-recorder',
    stream: options.stream,
    types: options.types,
    replayMs: 3_600_000,
    onEvent: (event) => seen.push(event),
  }).start()
  return {
    seen,
    bus,
    close: async () => {
      await follower.stop()
      await bus.close()
    },
  }
}
