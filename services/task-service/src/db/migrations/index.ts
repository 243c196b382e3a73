import type { Migration } from 'kysely/migration'
import * as createTasks from './2026-11-27T00-create-tasks.js'
import * as events from './2026-12-01T00-events.js'

/** Every migration, by name; names sort in the order they apply. */
export const migrations: Record<string, Migration> = {
  '2026-11-27T00-create-tasks': createTasks,
  '2026-12-01T00-events': events,
}
