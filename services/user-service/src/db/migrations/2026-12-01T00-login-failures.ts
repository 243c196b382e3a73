import { type Kysely, sql } from 'kysely'

// Frozen in time: migrations never import the live schema types.
// Failed logins per email and window, counted in the database so the lock is decided atomically: an
// attempt is reserved (one upsert) before its password check, whatever the number of replicas.
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('login_failures')
    .addColumn('email', 'text', (col) => col.primaryKey())
    .addColumn('window_started_at', sql`timestamptz(3)`, (col) => col.notNull().defaultTo(sql`now()`))
    .addColumn('failures', 'integer', (col) => col.notNull())
    .execute()
  await db.schema
    .createIndex('login_failures_window_started_at_idx')
    .on('login_failures')
    .column('window_started_at')
    .execute()
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('login_failures').execute()
}
