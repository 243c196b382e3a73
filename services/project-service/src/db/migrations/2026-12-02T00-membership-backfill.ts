import { type Kysely, sql } from 'kysely'

// Frozen in time: migrations never import the live schema types or the event catalogue.
// One `projects.member.added` per membership that exists now, written to the outbox. Memberships made
// before the outbox existed never produced an event, so a consumer building a read model from the stream
// (the task-service's project_members) would never learn them. The consumers upsert, so a membership
// whose event was sent already is only confirmed; events written after this migration follow in outbox
// order. The JSON is the envelope of packages/events (version 1), built in SQL with its key order.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    insert into event_outbox (event_id, subject, aggregate_id, payload)
    select event_id, 'projects.member.added', project_id::text,
      json_build_object(
        'id', event_id,
        'type', 'projects.member.added',
        'schema_version', 1,
        'occurred_at', to_char(now() at time zone 'utc', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
        'aggregate_type', 'project',
        'aggregate_id', project_id::text,
        'producer', 'project-service',
        'traceparent', null,
        'data', json_build_object('project_id', project_id, 'user_id', user_id, 'role', role)
      )
    from (
      select gen_random_uuid() as event_id, project_id, user_id, role
      from project_members
      order by project_id, created_at, user_id
    ) as memberships
  `.execute(db)
}

// Nothing to undo: the events describe memberships that exist; consumers hold them already or will.
export async function down(_db: Kysely<any>): Promise<void> {}
