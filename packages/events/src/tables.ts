import {
  type ColumnType,
  type DeleteQueryBuilder,
  type Generated,
  type InsertQueryBuilder,
  type Kysely,
  type QueryCreator,
  sql,
  type Transaction,
  type UpdateQueryBuilder,
} from 'kysely'
import type { EventType } from './catalog.js'
import type { EventEnvelope } from './envelope.js'

/** The outbox: events written in the same transaction as the change they describe. */
export interface OutboxTable {
  id: Generated<number>
  event_id: string
  subject: string
  aggregate_id: string
  payload: ColumnType<EventEnvelope, string, string>
  created_at: ColumnType<Date, never, never>
  sent_at: Date | null
}

/** The inbox: ids of the events a consumer has applied, written in the same transaction as the effect. */
export interface InboxTable {
  consumer: string
  event_id: string
  subject: string
  processed_at: ColumnType<Date, never, never>
}

export interface OutboxDatabase {
  event_outbox: OutboxTable
}

export interface InboxDatabase {
  event_inbox: InboxTable
}

/** Migration step (frozen): the outbox table and its index of unsent rows. */
export async function createOutboxTable(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('event_outbox')
    .addColumn('id', 'bigint', (col) => col.primaryKey().generatedAlwaysAsIdentity())
    .addColumn('event_id', 'uuid', (col) => col.notNull().unique())
    .addColumn('subject', 'text', (col) => col.notNull())
    .addColumn('aggregate_id', 'text', (col) => col.notNull())
    .addColumn('payload', 'json', (col) => col.notNull()) // json, not jsonb: the text as written (key order kept)
    .addColumn('created_at', sql`timestamptz(3)`, (col) => col.notNull().defaultTo(sql`now()`))
    .addColumn('sent_at', sql`timestamptz(3)`)
    .execute()
  // The relay's one query: the oldest unsent rows. A partial index stays as small as the backlog.
  await sql`create index event_outbox_unsent_idx on event_outbox (id) where sent_at is null`.execute(db)
  await db.schema.createIndex('event_outbox_sent_at_idx').on('event_outbox').column('sent_at').execute()
}

/**
 * Migration step (frozen): the outbox keeps only the indexes its queries use. The unique index on
 * `event_id` goes (nothing looks a row up by it; the id is a random UUID made with the event, and a
 * re-published event is dropped by the broker's `Nats-Msg-Id` dedupe and by every consumer's inbox), and
 * the b-tree on `sent_at` gives way to a BRIN on `created_at` for the relay's hourly purge: rows are
 * appended in time order, so a BRIN of a few pages finds the old ones, and an insert into it costs next to
 * nothing, where the b-tree took an entry on every insert and another on every UPDATE marking a row sent.
 */
export async function slimOutboxIndexes(db: Kysely<any>): Promise<void> {
  await sql`alter table event_outbox drop constraint event_outbox_event_id_key`.execute(db)
  await db.schema.dropIndex('event_outbox_sent_at_idx').execute()
  await sql`create index event_outbox_created_at_brin on event_outbox using brin (created_at) with (autosummarize = on)`.execute(
    db,
  )
}

/** Migration step (frozen): undoes slimOutboxIndexes. */
export async function restoreOutboxIndexes(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex('event_outbox_created_at_brin').execute()
  await db.schema.createIndex('event_outbox_sent_at_idx').on('event_outbox').column('sent_at').execute()
  await sql`alter table event_outbox add constraint event_outbox_event_id_key unique (event_id)`.execute(db)
}

/** Migration step (frozen): the inbox table. */
export async function createInboxTable(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('event_inbox')
    .addColumn('consumer', 'text', (col) => col.notNull())
    .addColumn('event_id', 'uuid', (col) => col.notNull())
    .addColumn('subject', 'text', (col) => col.notNull())
    .addColumn('processed_at', sql`timestamptz(3)`, (col) => col.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('event_inbox_pk', ['consumer', 'event_id'])
    .execute()
  await db.schema
    .createIndex('event_inbox_processed_at_idx')
    .on('event_inbox')
    .column('processed_at')
    .execute()
}

/**
 * Writes events into the outbox inside the caller's transaction: they are published if and only if the
 * change commits. Never touches the broker, so a broker outage never fails or slows a write.
 */
export async function recordEvents(
  trx: Transaction<any> | Kysely<any>,
  events: readonly EventEnvelope<EventType>[],
): Promise<void> {
  if (events.length === 0) return
  await (trx as Kysely<OutboxDatabase>).insertInto('event_outbox').values(outboxRows(events)).execute()
}

/** A data-modifying statement: what `recordEventsWith` runs together with the outbox insert. */
export type ChangeQuery =
  | InsertQueryBuilder<any, any, any>
  | UpdateQueryBuilder<any, any, any, any>
  | DeleteQueryBuilder<any, any, any>

/**
 * Runs `change` (an INSERT, UPDATE or DELETE without RETURNING) and writes `events` into the outbox in one
 * statement, `WITH change AS (…) INSERT INTO event_outbox …`: one round trip to the database instead of
 * two. PostgreSQL runs a data-modifying WITH to completion whether or not the outer statement reads it, and
 * the statement succeeds or fails as a whole, inside the caller's transaction as before. Without events,
 * only `change` runs.
 */
export async function recordEventsWith<DB>(
  trx: Transaction<DB> | Kysely<DB>,
  change: (db: QueryCreator<DB>) => ChangeQuery,
  events: readonly EventEnvelope<EventType>[],
): Promise<void> {
  if (events.length === 0) {
    await change(trx).execute()
    return
  }
  await (trx as unknown as Kysely<OutboxDatabase>)
    .with('change', (db) => change(db as unknown as QueryCreator<DB>))
    .insertInto('event_outbox')
    .values(outboxRows(events))
    .execute()
}

function outboxRows(events: readonly EventEnvelope<EventType>[]) {
  return events.map((event) => ({
    event_id: event.id,
    subject: event.type,
    aggregate_id: event.aggregate_id,
    payload: JSON.stringify(event),
  }))
}
