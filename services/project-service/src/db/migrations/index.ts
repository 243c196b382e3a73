import type { Migration } from 'kysely/migration'
import * as createProjects from './2026-11-27T00-create-projects.js'
import * as events from './2026-12-01T00-events.js'
import * as membershipBackfill from './2026-12-02T00-membership-backfill.js'
import * as outboxIndexes from './2026-12-03T00-outbox-indexes.js'

/** Every migration, by name; names sort in the order they apply. */
export const migrations: Record<string, Migration> = {
  '2026-11-27T00-create-projects': createProjects,
  '2026-12-01T00-events': events,
  '2026-12-02T00-membership-backfill': membershipBackfill,
  '2026-12-03T00-outbox-indexes': outboxIndexes,
}
