import { createInboxTable, createOutboxTable } from '@task-manager/events'
import type { Kysely } from 'kysely'

// The outbox of the project-service's events and the inbox of the user events it consumes.
export async function up(db: Kysely<any>): Promise<void> {
  await createOutboxTable(db)
  await createInboxTable(db)
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('event_inbox').execute()
  await db.schema.dropTable('event_outbox').execute()
}
