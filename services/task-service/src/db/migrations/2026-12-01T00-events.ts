import { createInboxTable } from '@task-manager/events'
import { type Kysely, sql } from 'kysely'

// The inbox of the project events this service consumes, and its local read model of memberships.
export async function up(db: Kysely<any>): Promise<void> {
  await createInboxTable(db)
  await db.schema
    .createTable('project_members')
    .addColumn('project_id', 'integer', (col) => col.notNull())
    .addColumn('user_id', 'integer', (col) => col.notNull())
    .addColumn('role', 'text', (col) => col.notNull().check(sql`role in ('owner', 'editor', 'viewer')`))
    .addColumn('updated_at', sql`timestamptz(3)`, (col) => col.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('project_members_pk', ['project_id', 'user_id'])
    .execute()
  // "Which projects may this user see": the task list's subquery, an index-only walk.
  await db.schema
    .createIndex('project_members_user_id_idx')
    .on('project_members')
    .columns(['user_id', 'project_id'])
    .execute()
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('project_members').execute()
  await db.schema.dropTable('event_inbox').execute()
}
