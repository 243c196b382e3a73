import type { Api } from './http.ts'
import { sleep } from './run.ts'

export interface LoadReport {
  requests: number
  /** Answers that were not what the request should get (status 0 = no answer), with when and what. */
  failures: { at: number; what: string; status: number; body: string }[]
  /** Ids of the tasks whose creation was acknowledged (201). */
  acknowledged: number[]
  statuses: Record<string, number>
  /** When the load started (epoch ms): `at` is relative to it. */
  startedAt: number
}

export interface Load {
  /** The report so far (the load goes on). */
  snapshot(): LoadReport
  stop(): Promise<LoadReport>
}

/**
 * Steady load through the gateway by `workers` clients, each in a loop: create a task (a write whose
 * acknowledgement is recorded), read it back, list the project's tasks, and every few rounds log in again.
 * Every request has a deadline; `pauseMs` between rounds keeps the rate steady on a small machine.
 */
export function startLoad(
  api: Api,
  options: {
    token?: string
    projectId?: number
    login?: { email: string; password: string }
    workers?: number
    pauseMs?: number
    expectStatus?: (status: number) => boolean
  },
): Load {
  const started = Date.now()
  const report: LoadReport = { requests: 0, failures: [], acknowledged: [], statuses: {}, startedAt: started }
  const ok = options.expectStatus ?? ((status: number) => status >= 200 && status < 300)
  let running = true
  const note = (what: string, status: number, body: unknown, good: boolean) => {
    report.requests += 1
    report.statuses[status] = (report.statuses[status] ?? 0) + 1
    if (!good)
      report.failures.push({
        at: Date.now() - started,
        what,
        status,
        body: JSON.stringify(body).slice(0, 200),
      })
  }
  const worker = async (n: number) => {
    let round = 0
    while (running) {
      round += 1
      const body = options.projectId
        ? { title: `load ${n}-${round}`, project_id: options.projectId }
        : { title: `load ${n}-${round}`, user_id: 1, project_id: 1 }
      const created = await api('POST', '/tasks', { token: options.token, body, timeoutMs: 20_000 })
      note('POST /tasks', created.status, created.body, ok(created.status))
      if (created.status === 201) {
        report.acknowledged.push(created.body.id)
        const read = await api('GET', `/tasks/${created.body.id}`, {
          token: options.token,
          timeoutMs: 20_000,
        })
        note('GET /tasks/:id', read.status, read.body, ok(read.status))
      }
      const list = await api(
        'GET',
        `/tasks?${options.projectId ? `project_id=${options.projectId}&` : ''}limit=5`,
        { token: options.token, timeoutMs: 20_000 },
      )
      note('GET /tasks', list.status, list.body, ok(list.status))
      if (options.login && round % 10 === 0) {
        const login = await api('POST', '/auth/token', { body: options.login, timeoutMs: 20_000 })
        note('POST /auth/token', login.status, login.body, ok(login.status))
      }
      await sleep(options.pauseMs ?? 50)
    }
  }
  const workers = Array.from({ length: options.workers ?? 4 }, (_, n) => worker(n))
  return {
    snapshot: () => report,
    async stop() {
      running = false
      await Promise.all(workers)
      return report
    },
  }
}

/** Ids among `ids` that the API no longer has (each read with a deadline; 404 = lost). */
export async function lostWrites(
  api: Api,
  ids: number[],
  token?: string,
): Promise<{ lost: number[]; unreadable: number[] }> {
  const lost: number[] = []
  const unreadable: number[] = []
  for (let i = 0; i < ids.length; i += 16) {
    await Promise.all(
      ids.slice(i, i + 16).map(async (id) => {
        const res = await api('GET', `/tasks/${id}`, { token, timeoutMs: 20_000 })
        if (res.status === 404) lost.push(id)
        else if (res.status !== 200) unreadable.push(id)
      }),
    )
  }
  return { lost, unreadable }
}
