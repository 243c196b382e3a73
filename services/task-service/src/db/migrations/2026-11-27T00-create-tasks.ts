import { type Kysely, sql } from 'kysely'

// Frozen in time: migrations never import the live schema types.
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('tasks')
    .addColumn('id', 'integer', (col) => col.primaryKey().generatedAlwaysAsIdentity())
    .addColumn('title', 'varchar(200)', (col) => col.notNull())
    .addColumn('description', 'varchar(2000)', (col) => col.notNull().defaultTo(''))
    .addColumn('status', 'text', (col) =>
      col.notNull().defaultTo('todo').check(sql`status in ('todo', 'in_progress', 'done')`),
    )
    .addColumn('priority', 'text', (col) =>
      col.notNull().defaultTo('medium').check(sql`priority in ('low', 'medium', 'high')`),
    )
    .addColumn('priority_rank', 'smallint', (col) =>
      col
        .generatedAlwaysAs(sql`case priority when 'low' then 1 when 'medium' then 2 else 3 end`)
        .stored()
        .notNull(),
    )
    .addColumn('user_id', 'integer', (col) => col.notNull().check(sql`user_id > 0`))
    .addColumn('project_id', 'integer', (col) => col.notNull().check(sql`project_id > 0`))
    .addColumn('due_date', sql`timestamptz(3)`)
    .addColumn('tags', sql`varchar(50)[]`, (col) => col.notNull().defaultTo(sql`'{}'`))
    .addColumn('version', 'integer', (col) => col.notNull().defaultTo(1))
    .addColumn('created_at', sql`timestamptz(3)`, (col) => col.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', sql`timestamptz(3)`, (col) => col.notNull().defaultTo(sql`now()`))
    .execute()

  // Keyset pagination walks (sort key, id); filters by owner/project are the common case.
  await db.schema.createIndex('tasks_created_at_id_idx').on('tasks').columns(['created_at', 'id']).execute()
  await db.schema
    .createIndex('tasks_project_id_idx')
    .on('tasks')
    .columns(['project_id', 'created_at', 'id'])
    .execute()
  await db.schema
    .createIndex('tasks_user_id_idx')
    .on('tasks')
    .columns(['user_id', 'created_at', 'id'])
    .execute()
  await db.schema.createIndex('tasks_tags_idx').on('tasks').using('gin').column('tags').execute()

  await db.schema
    .createTable('idempotency_keys')
    .addColumn('scope', 'text', (col) => col.notNull())
    .addColumn('key', 'varchar(255)', (col) => col.notNull())
    .addColumn('request_hash', 'text', (col) => col.notNull())
    .addColumn('status_code', 'smallint', (col) => col.notNull())
    .addColumn('response', 'jsonb', (col) => col.notNull())
    .addColumn('created_at', sql`timestamptz(3)`, (col) => col.notNull().defaultTo(sql`now()`))
    .addColumn('expires_at', 'timestamptz', (col) => col.notNull())
    .addPrimaryKeyConstraint('idempotency_keys_pk', ['scope', 'key'])
    .execute()
  await db.schema
    .createIndex('idempotency_keys_expires_at_idx')
    .on('idempotency_keys')
    .column('expires_at')
    .execute()
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('idempotency_keys').execute()
  await db.schema.dropTable('tasks').execute()
}
