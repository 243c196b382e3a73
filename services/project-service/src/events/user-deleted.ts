import type { EventHandler } from '@task-manager/events'
import type { Transaction } from 'kysely'
import type { ProjectDatabase } from '../db/schema.js'
import type { ProjectRepository } from '../projects/repository.js'

/**
 * users.user.deleted → the user leaves every project, in one transaction with the inbox row. The
 * last-owner rule: a project the user solely owned passes to the longest-standing remaining member
 * (editors before viewers), who becomes owner; a project with no other member is deleted. Each change
 * emits its own events (member.role_changed, member.removed with the successor for their tasks,
 * project.deleted), so the task-service follows.
 */
export function onUserDeleted(repository: ProjectRepository): EventHandler<'users.user.deleted'> {
  return async (event, anyTrx) => {
    const trx = anyTrx as Transaction<ProjectDatabase>
    const userId = event.data.user_id
    const memberships = await trx
      .selectFrom('project_members')
      .select('project_id')
      .where('user_id', '=', userId)
      .orderBy('project_id')
      .execute()
    // In project id order, like every other multi-project change: no lock-order deadlocks.
    for (const { project_id: projectId } of memberships) {
      const project = await trx
        .selectFrom('projects')
        .selectAll()
        .where('id', '=', projectId)
        .forUpdate()
        .executeTakeFirst()
      await repository.inLockedProject(trx, project, event.traceparent, async (locked) => {
        if (!locked) return
        const member = await locked.member(userId)
        if (!member) return
        if (member.role === 'owner' && (await locked.ownerCount()) <= 1) {
          const [heir] = await locked.othersBySeniority(userId)
          if (!heir) {
            await locked.deleteProject('last_member_deleted')
            return
          }
          await locked.setRole(heir.user_id, 'owner')
        }
        await locked.remove(userId, 'user_deleted')
      })
    }
  }
}
