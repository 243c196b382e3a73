import type { EventHandler, EventHandlers } from '@task-manager/events'
import type { Transaction } from 'kysely'
import type { TaskDatabase } from '../db/schema.js'

const tx = (trx: Transaction<any>) => trx as Transaction<TaskDatabase>

/** A member added, or their role changed: the read model holds the role the event names. */
const setMemberRole: EventHandler<'projects.member.added' | 'projects.member.role_changed'> = async (
  { data },
  trx,
) => {
  await tx(trx)
    .insertInto('project_members')
    .values({ project_id: data.project_id, user_id: data.user_id, role: data.role })
    .onConflict((conflict) =>
      conflict.columns(['project_id', 'user_id']).doUpdateSet({ role: data.role, updated_at: new Date() }),
    )
    .execute()
}

/**
 * The task-service's reactions to the project events, each in one transaction with its inbox row:
 * - member added / role changed / removed → the local membership read model that decides task access;
 * - member removed → their tasks in that project pass to the successor the event names (an owner who
 *   stays), so no task is left assigned to someone who cannot see it;
 * - project deleted → its tasks are deleted (not archived: the project is gone and nobody could see
 *   them), with its memberships.
 */
export const projectEventHandlers: EventHandlers = {
  'projects.member.added': setMemberRole,
  'projects.member.role_changed': setMemberRole,
  'projects.member.removed': async ({ data }, trx) => {
    await tx(trx)
      .deleteFrom('project_members')
      .where('project_id', '=', data.project_id)
      .where('user_id', '=', data.user_id)
      .execute()
    if (data.successor_id !== null && data.successor_id !== data.user_id) {
      await tx(trx)
        .updateTable('tasks')
        .set({ user_id: data.successor_id, updated_at: new Date() })
        .set((eb) => ({ version: eb('version', '+', 1) }))
        .where('project_id', '=', data.project_id)
        .where('user_id', '=', data.user_id)
        .execute()
    }
  },
  'projects.project.deleted': async ({ data }, trx) => {
    await tx(trx).deleteFrom('tasks').where('project_id', '=', data.project_id).execute()
    await tx(trx).deleteFrom('project_members').where('project_id', '=', data.project_id).execute()
  },
}
