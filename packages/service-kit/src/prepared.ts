import type { Compilable, CompiledQuery, Kysely } from 'kysely'
import type pg from 'pg'

// Which pool a Kysely instance made by createDatabase() runs on (Kysely keeps its pool private).
const pools = new WeakMap<object, pg.Pool>()

export function registerPool<DB>(db: Kysely<DB>, pool: pg.Pool): void {
  pools.set(db, pool)
}

/** The pg pool behind a Kysely instance made by createDatabase(), if it was made there. */
export function poolOf<DB>(db: Kysely<DB>): pg.Pool | undefined {
  return pools.get(db)
}

export interface PreparedQuery<Row> {
  /** The statement's name on every connection (pg prepares it once per connection). */
  readonly name: string
  readonly sql: string
  /** Runs the statement with these values in place of the compiled query's parameters, in order. */
  execute(values: readonly unknown[]): Promise<Row[]>
}

/**
 * A typed Kysely query, compiled once and run as a named prepared statement.
 *
 * Why not Kysely's own execute: on a one-row read Kysely spends about as much Node CPU building and
 * compiling the query tree and going through its driver as pg spends on the whole round trip, and pg
 * then sends Parse and Describe every time. Here the query is still written (and typed) with Kysely, but
 * compiled once; each call is one `pool.query({ name, text, values })`, which after the first call on a
 * connection sends only Bind/Execute. Kysely plugins (result transformers) are not applied: use it only
 * on instances without plugins, as createDatabase() makes them.
 *
 * Select explicit columns rather than `selectAll()` (`select *`): PostgreSQL refuses to run a prepared
 * statement whose result type changed ("cached plan must not change result type"), which a migration
 * adding a column would cause while old replicas still hold the statement.
 */
export function prepareQuery<DB, Row>(
  db: Kysely<DB>,
  name: string,
  query: Compilable<Row> | CompiledQuery<Row>,
): PreparedQuery<Row> {
  const compiled = 'compile' in query ? query.compile() : query
  const pool = poolOf(db)
  const count = compiled.parameters.length
  const text = compiled.sql
  function check(values: readonly unknown[]) {
    if (values.length !== count) {
      throw new Error(`prepared query ${name} takes ${count} values, got ${values.length}`)
    }
  }
  if (!pool) {
    // Not made by createDatabase (a test's own Kysely, say): the same compiled query through Kysely.
    return {
      name,
      sql: text,
      async execute(values) {
        check(values)
        const result = await db.executeQuery<Row>({ ...compiled, parameters: values })
        return result.rows
      },
    }
  }
  return {
    name,
    sql: text,
    async execute(values) {
      check(values)
      const result = await pool.query({ name, text, values: values as unknown[] })
      return result.rows as Row[]
    },
  }
}
