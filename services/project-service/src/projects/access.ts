import { HttpProblem, problemType } from '@task-manager/service-kit'
import type { MemberRole } from '../db/schema.js'
import type { LockedProject, ProjectRepository } from './repository.js'

/**
 * Who is asking. With AUTH_MODE=disabled there is no caller (`open`): every request may do everything,
 * as in the original open API. Otherwise the verified token's user id and whether it carries the
 * `admin` role.
 */
export type Caller = { open: true } | { open: false; id: number; admin: boolean }

export function projectNotFound(id: number): HttpProblem {
  return new HttpProblem(404, `Project ${id} not found`)
}

export function notAMember(projectId: number, userId: number): HttpProblem {
  return new HttpProblem(404, `User ${userId} is not a member of project ${projectId}`)
}

/**
 * Object-level authorization. A project is visible to its members and to administrators; to anyone
 * else it does not exist (404, never 403, so ids can't be probed). Throws unless the caller may see
 * the project, given the caller's role in it (null: not a member).
 */
export function assertVisible(projectId: number, caller: Caller, role: MemberRole | null): void {
  if (caller.open || role !== null || caller.admin) return
  throw projectNotFound(projectId)
}

const ACTIONS = { edit: ['owner', 'editor'], manage: ['owner'] } as const satisfies Record<
  string,
  MemberRole[]
>

/**
 * Function-level authorization inside a visible project: `edit` needs owner or editor, `manage`
 * (members, deletion) needs owner. An administrator who is not a member may read but not change.
 */
export function assertMay(
  action: keyof typeof ACTIONS,
  projectId: number,
  caller: Caller,
  role: MemberRole | null,
): void {
  assertVisible(projectId, caller, role)
  if (caller.open) return
  const allowed: readonly MemberRole[] = ACTIONS[action]
  if (role !== null && allowed.includes(role)) return
  const what = action === 'edit' ? 'Changing' : 'Managing the members of or deleting'
  throw new HttpProblem(
    403,
    `${what} project ${projectId} needs the ${allowed.join(' or ')} role; you are ${role ? `a ${role}` : 'not a member'}`,
    { type: problemType('forbidden') },
  )
}

/** The project as the caller sees it (with the caller's role), or a 404 problem. */
export async function visibleProject(repository: ProjectRepository, id: number, caller: Caller) {
  const row = await repository.find(id, caller.open ? null : caller.id)
  if (!row) throw projectNotFound(id)
  assertVisible(id, caller, row.role)
  return row
}

/** The caller's role read inside the locked transaction: it may have changed since the request began. */
export async function roleLocked(locked: LockedProject, caller: Caller): Promise<MemberRole | null> {
  return caller.open ? null : ((await locked.member(caller.id))?.role ?? null)
}

export async function assertManagerLocked(locked: LockedProject, caller: Caller): Promise<void> {
  assertMay('manage', locked.project.id, caller, await roleLocked(locked, caller))
}

/** Whose list a signed-in caller reads: their own by default, another user's only as an administrator. */
export function listedUser(
  caller: Caller & { open: false },
  requested: number | undefined,
  what: string,
): number {
  if (requested !== undefined && requested !== caller.id && !caller.admin) {
    throw new HttpProblem(403, `Only administrators may list another user's ${what}`, {
      type: problemType('forbidden'),
    })
  }
  return requested ?? caller.id
}
