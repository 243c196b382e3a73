import { type Kysely, sql } from 'kysely'

// Frozen in time: migrations never import the live schema types.
// `q=` is a case-insensitive substring search (ILIKE '%…%') over title and description. Trigram GIN
// indexes let PostgreSQL answer it from the index for patterns of three characters or more, instead of
// reading every row of the table. pg_trgm ships with PostgreSQL and is a trusted extension: the
// database's owner (the service's role) may create it.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`create extension if not exists pg_trgm`.execute(db)
  await sql`create index if not exists tasks_title_trgm_idx on tasks using gin (title gin_trgm_ops)`.execute(
    db,
  )
  await sql`create index if not exists tasks_description_trgm_idx on tasks using gin (description gin_trgm_ops)`.execute(
    db,
  )
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index if exists tasks_description_trgm_idx`.execute(db)
  await sql`drop index if exists tasks_title_trgm_idx`.execute(db)
}
