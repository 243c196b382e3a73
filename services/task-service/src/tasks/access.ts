import type { Principal } from '@task-manager/auth'
import { HttpProblem, problemType, propagationHeaders, type Upstream } from '@task-manager/service-kit'
import type { FastifyRequest } from 'fastify'
import { LRUCache } from 'lru-cache'
import type { MembershipReadModel } from './memberships.js'
import type { Visibility } from './repository.js'

export type ProjectRole = 'owner' | 'editor' | 'viewer'

interface Membership {
  project_id: number
  role: ProjectRole
}

/** Bound on how many membership pages one task list may fetch (1,000 projects a page). */
const MAX_MEMBERSHIP_PAGES = 20

/**
 * Recently confirmed memberships, so a user working in a project does not cost a project-service round
 * trip on every task request. Only positive answers are kept, for `ttlMs`: a newly added member is seen
 * at once, a removed member keeps access for at most `ttlMs`. Failures are never kept. Concurrent lookups
 * of one pair share one call. Bounded (lru-cache): the least recently used entries go first.
 */
class MembershipCache {
  private readonly roles: LRUCache<string, ProjectRole> | null
  private readonly inFlight = new Map<string, Promise<ProjectRole | null>>()

  constructor(ttlMs: number, maxEntries = 10_000) {
    this.roles = ttlMs > 0 ? new LRUCache({ max: maxEntries, ttl: ttlMs }) : null
  }

  async get(key: string, load: () => Promise<ProjectRole | null>): Promise<ProjectRole | null> {
    const roles = this.roles
    if (roles === null) return load()
    const hit = roles.get(key)
    if (hit) return hit
    let pending = this.inFlight.get(key)
    if (!pending) {
      pending = load()
        .then((role) => {
          if (role) roles.set(key, role)
          return role
        })
        .finally(() => this.inFlight.delete(key))
      this.inFlight.set(key, pending)
    }
    return pending
  }
}

/**
 * Who may see and change which task. Tasks belong to projects; who is a member with which role comes
 * from the local membership read model, kept by the project events (when NATS is configured), else from
 * the project-service over HTTP:
 * - members (any role) read a project's tasks; owners and editors write them;
 * - administrators read every task, and write where they are members;
 * - a task someone may not read answers 404, exactly like a missing one, and never shows in lists;
 * - when the project-service can't answer, the request fails with 503 — never a silent accept.
 * With the read model, a member the model does not know yet (added a moment ago, events still on their
 * way) is confirmed with the project-service; if that call fails, reads answer from the model alone (so
 * task reads keep working while the project-service is down) and writes fail with 503.
 * With AUTH_MODE=disabled (`open`) every check passes, as in the original sample.
 */
export class TaskAccess {
  private readonly cache: MembershipCache

  constructor(
    private readonly open: boolean,
    private readonly projects: Upstream | null,
    membershipCacheTtlMs = 0,
    private readonly readModel: MembershipReadModel | null = null,
  ) {
    this.cache = new MembershipCache(membershipCacheTtlMs)
  }

  private caller(request: FastifyRequest): Principal | null {
    return request.principal ?? null
  }

  /** The namespace of Idempotency-Keys: each caller has their own. */
  scope(request: FastifyRequest): string {
    const principal = this.caller(request)
    return principal ? `user:${principal.id}` : 'anonymous'
  }

  /** The assignee of a new task: the body's user_id, else the caller. */
  assigneeOf(request: FastifyRequest, userId: number | undefined): number | undefined {
    return userId ?? this.caller(request)?.id
  }

  private headers(request: FastifyRequest): Record<string, string> {
    const headers = propagationHeaders(request)
    if (request.headers.authorization) headers.authorization = request.headers.authorization
    return headers
  }

  /**
   * `userId`'s role in `projectId`, or null when not a member (or no such project). `forWrite`: a failed
   * confirmation with the project-service is an error (503), not a "no".
   */
  async roleOf(
    request: FastifyRequest,
    projectId: number,
    userId: number,
    forWrite = false,
  ): Promise<ProjectRole | null> {
    if (!this.readModel) return this.remoteRole(request, projectId, userId)
    const role = await this.readModel.role(projectId, userId)
    if (role || !this.projects) return role
    try {
      return await this.remoteRole(request, projectId, userId)
    } catch (error) {
      if (forWrite) throw error
      return null
    }
  }

  private async remoteRole(
    request: FastifyRequest,
    projectId: number,
    userId: number,
  ): Promise<ProjectRole | null> {
    const projects = this.projects
    if (!projects) return null
    return this.cache.get(`${projectId}:${userId}`, async () => {
      const response = await projects.get<{ role: ProjectRole }>(`projects/${projectId}/members/${userId}`, {
        headers: this.headers(request),
      })
      return response.status === 200 ? (response.body?.role ?? null) : null
    })
  }

  /** What a list may show the caller. */
  async visibility(request: FastifyRequest): Promise<Visibility> {
    const principal = this.caller(request)
    if (this.open || !principal || principal.role === 'admin') return { all: true }
    if (this.readModel) return { memberOf: principal.id }
    if (!this.projects) return { all: true }
    const projectIds: number[] = []
    let path: string | null = `memberships?limit=1000`
    for (let page = 0; path && page < MAX_MEMBERSHIP_PAGES; page++) {
      const response: Awaited<ReturnType<Upstream['get']>> = await this.projects.get<Membership[]>(path, {
        headers: this.headers(request),
        accept: [200],
      })
      for (const membership of (response.body as Membership[]) ?? []) projectIds.push(membership.project_id)
      const next = /<([^>]+)>;\s*rel="next"/.exec(response.headers.get('link') ?? '')?.[1]
      path = next ? next.replace(/^\//, '') : null
    }
    return { projectIds }
  }

  /** True when the caller may read tasks of `projectId`. */
  async canRead(request: FastifyRequest, projectId: number): Promise<boolean> {
    const principal = this.caller(request)
    if (this.open || !principal) return this.open
    if (principal.role === 'admin') return true
    return (await this.roleOf(request, projectId, principal.id)) !== null
  }

  /**
   * Checks the caller may write tasks of `projectId`. For an existing task (`taskId`) a non-member gets
   * 404 (the task stays invisible); for a new one, 422 (the project is unknown to them). Viewers get 403.
   */
  async assertCanWrite(request: FastifyRequest, projectId: number, taskId?: number): Promise<void> {
    const principal = this.caller(request)
    if (this.open) return
    if (!principal) throw new HttpProblem(401, 'Authentication required')
    const role = await this.roleOf(request, projectId, principal.id, true)
    if (role === 'owner' || role === 'editor') return
    if (role === 'viewer') {
      throw new HttpProblem(
        403,
        `You are a viewer of project ${projectId}; only its owners and editors change tasks`,
        {
          type: problemType('forbidden'),
        },
      )
    }
    if (taskId !== undefined && principal.role !== 'admin')
      throw new HttpProblem(404, `Task ${taskId} not found`)
    throw new HttpProblem(422, `Project ${projectId} does not exist or you are not a member of it`, {
      type: problemType('validation-failed'),
      errors: [{ in: 'body', field: 'project_id', message: 'is not a project you are a member of' }],
    })
  }

  /** The assignee must be a member of the task's project. */
  async assertAssignable(request: FastifyRequest, projectId: number, userId: number): Promise<void> {
    if (this.open) return
    const principal = this.caller(request)
    if (principal && principal.id === userId) return // the caller's own membership was just checked
    if ((await this.roleOf(request, projectId, userId, true)) === null) {
      throw new HttpProblem(422, `User ${userId} is not a member of project ${projectId}`, {
        type: problemType('validation-failed'),
        errors: [{ in: 'body', field: 'user_id', message: 'is not a member of the project' }],
      })
    }
  }
}
