import { type Kysely, sql } from 'kysely'

// Frozen in time: migrations never import the live schema types.
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('projects')
    .addColumn('id', 'integer', (col) => col.primaryKey().generatedAlwaysAsIdentity())
    .addColumn('name', 'varchar(200)', (col) => col.notNull())
    .addColumn('description', 'varchar(2000)', (col) => col.notNull().defaultTo(''))
    .addColumn('status', 'text', (col) =>
      col.notNull().defaultTo('active').check(sql`status in ('active', 'archived')`),
    )
    .addColumn('created_by', 'integer', (col) => col.check(sql`created_by > 0`))
    .addColumn('created_at', sql`timestamptz(3)`, (col) => col.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', sql`timestamptz(3)`, (col) => col.notNull().defaultTo(sql`now()`))
    .execute()

  await db.schema
    .createTable('project_members')
    .addColumn('project_id', 'integer', (col) => col.notNull().references('projects.id').onDelete('cascade'))
    .addColumn('user_id', 'integer', (col) => col.notNull().check(sql`user_id > 0`))
    .addColumn('role', 'text', (col) => col.notNull().check(sql`role in ('owner', 'editor', 'viewer')`))
    .addColumn('created_at', sql`timestamptz(3)`, (col) => col.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', sql`timestamptz(3)`, (col) => col.notNull().defaultTo(sql`now()`))
    // The primary key is the index the membership lookup (project, user) → role walks.
    .addPrimaryKeyConstraint('project_members_pk', ['project_id', 'user_id'])
    .execute()
  // "The caller's projects": from a user to their projects, in project id order (keyset pagination).
  await db.schema
    .createIndex('project_members_user_id_idx')
    .on('project_members')
    .columns(['user_id', 'project_id'])
    .execute()
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('project_members').execute()
  await db.schema.dropTable('projects').execute()
}
