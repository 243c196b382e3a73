import { type PreparedQuery, prepareQuery } from '@task-manager/service-kit'
import type { Kysely } from 'kysely'
import type { TaskDatabase } from '../db/schema.js'
import type { ProjectRole } from './access.js'

/**
 * The local membership read model (table project_members), kept by the project events
 * (src/events/handlers.ts): who is a member of which project with which role, answered from this
 * service's own database instead of a call to the project-service. It lags the project-service by the
 * event delay (docs/events.md, "Staleness"; metric events_consumer_lag_seconds).
 */
export class MembershipReadModel {
  private readonly byKey: PreparedQuery<{ role: ProjectRole }>

  constructor(db: Kysely<TaskDatabase>) {
    this.byKey = prepareQuery(
      db,
      'task_service_member_role',
      db.selectFrom('project_members').select('role').where('project_id', '=', 0).where('user_id', '=', 0),
    )
  }

  async role(projectId: number, userId: number): Promise<ProjectRole | null> {
    return (await this.byKey.execute([projectId, userId]))[0]?.role ?? null
  }
}
