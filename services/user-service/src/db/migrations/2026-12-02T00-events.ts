import { createOutboxTable } from '@task-manager/events'
import { type Kysely, sql } from 'kysely'

// Frozen in time: migrations never import the live schema types.
// valid_after: tokens of the user issued before it are refused (set on a password or role change, at
// logout); the outbox of the user-service's events (users.user.tokens_revoked, users.user.deleted).
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('users').addColumn('valid_after', sql`timestamptz(3)`).execute()
  await createOutboxTable(db)
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('event_outbox').execute()
  await db.schema.alterTable('users').dropColumn('valid_after').execute()
}
