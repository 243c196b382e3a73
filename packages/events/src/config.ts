import { Type } from 'typebox'

/** Settings every service that publishes or consumes events adds to its config schema. */
export const EventsConfigProperties = {
  NATS_URL: Type.Optional(
    Type.String({
      pattern: '^(nats|tls|wss?)://',
      description:
        'NATS server(s) with JetStream, comma-separated, e.g. nats://nats:4222; without it no events flow (the outbox keeps them)',
    }),
  ),
  EVENTS_STREAM_REPLICAS: Type.Integer({
    minimum: 1,
    maximum: 5,
    default: 1,
    description: 'Replicas of each JetStream stream (3 on a NATS cluster of 3)',
  }),
  EVENTS_RELAY_POLL_MS: Type.Integer({
    minimum: 10,
    default: 250,
    description: 'How often the outbox relay looks for rows written by other replicas',
  }),
  EVENTS_MAX_DELIVER: Type.Integer({
    minimum: 2,
    default: 6,
    description: 'Deliveries of an event a consumer keeps failing before it goes to the dead-letter stream',
  }),
}
