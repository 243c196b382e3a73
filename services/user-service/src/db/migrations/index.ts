import type { Migration } from 'kysely/migration'
import * as createUsers from './2026-11-27T00-create-users.js'
import * as loginFailures from './2026-12-01T00-login-failures.js'
import * as events from './2026-12-02T00-events.js'
import * as outboxIndexes from './2026-12-03T00-outbox-indexes.js'

/** Every migration, by name; names sort in the order they apply. */
export const migrations: Record<string, Migration> = {
  '2026-11-27T00-create-users': createUsers,
  '2026-12-01T00-login-failures': loginFailures,
  '2026-12-02T00-events': events,
  '2026-12-03T00-outbox-indexes': outboxIndexes,
}
