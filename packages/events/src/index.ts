export { EventBus, type EventBusOptions, type Logger, nanos, silentLogger } from './bus.js'
export { EVENTS, type EventData, type EventType, STREAMS, type StreamName } from './catalog.js'
export { EventsConfigProperties } from './config.js'
export {
  EventConsumer,
  type EventConsumerOptions,
  type EventHandler,
  type EventHandlers,
} from './consumer.js'
export { type EventEnvelope, InvalidEvent, newEvent, parseEvent, traceparentOf } from './envelope.js'
export { EventFollower, type EventFollowerOptions } from './follow.js'
export { Outbox } from './outbox.js'
export { OutboxRelay, type OutboxRelayOptions } from './relay.js'
export { REVOCATION_REPLAY_MS, tokenRevocationFollow } from './revocations.js'
export {
  type ServiceEvents,
  type ServiceEventsConfig,
  type ServiceEventsOptions,
  setUpServiceEvents,
} from './service.js'
export {
  type ChangeQuery,
  createInboxTable,
  createOutboxTable,
  type InboxDatabase,
  type InboxTable,
  type OutboxDatabase,
  type OutboxTable,
  recordEvents,
  recordEventsWith,
  restoreOutboxIndexes,
  slimOutboxIndexes,
} from './tables.js'
