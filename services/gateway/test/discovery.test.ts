import dns2 from 'dns2'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { call, sleep, startGateway, type TestGateway } from './helpers.js'
import { startUpstream, type TestUpstream } from './upstream-server.js'

const NAME = 'task-service.tm.svc.cluster.test'
const { Packet } = dns2

/** What the test DNS server answers for NAME right now (a headless Service's pod addresses). */
let records: string[] = []
let queries = 0
// biome-ignore lint/suspicious/noExplicitAny: dns2's bundled types predate its 3.x server API
let dnsServer: any
let pods: Map<string, TestUpstream>
let port: number
let others: TestUpstream[]
let gateway: TestGateway

async function startPod(host: string) {
  const pod = await startUpstream(`task-service@${host}`, { host, port })
  pods.set(host, pod)
  return pod
}

beforeAll(async () => {
  dnsServer = dns2.createServer({
    udp: true,
    // biome-ignore lint/suspicious/noExplicitAny: see above
    handle: (request: any, send: (response: any) => void) => {
      const response = Packet.createResponseFromRequest(request)
      const [question] = request.questions
      if (question?.name === NAME && question.type === Packet.TYPE.A) {
        queries += 1
        for (const address of records) {
          response.answers.push({
            name: NAME,
            type: Packet.TYPE.A,
            class: Packet.CLASS.IN,
            ttl: 1,
            address,
          } as never)
        }
      }
      send(response)
    },
  })
  await dnsServer.listen({ udp: { port: 0, address: '127.0.0.1' } })
  const dnsPort = dnsServer.addresses().udp.port as number

  // Three "pods" on one port, as a headless Service would list them.
  pods = new Map()
  const first = await startUpstream('task-service@127.0.0.1', { host: '127.0.0.1' })
  pods.set('127.0.0.1', first)
  port = first.port
  await startPod('127.0.0.2')
  await startPod('127.0.0.3')
  records = ['127.0.0.1', '127.0.0.2', '127.0.0.3']

  others = [await startUpstream('user-service'), await startUpstream('project-service')]
  gateway = await startGateway({
    AUTH_MODE: 'disabled',
    RATE_LIMIT_ENABLED: 'false',
    DISCOVERY_MODE: 'dns',
    DNS_SERVERS: `127.0.0.1:${dnsPort}`,
    DNS_REFRESH_MS: '200',
    EJECT_AFTER_FAILURES: '2',
    EJECT_FOR_MS: '1000',
    BREAKER_FAILURE_THRESHOLD: '50',
    TASK_SERVICE_URL: `http://${NAME}:${port}`,
    USER_SERVICE_URL: others[0]?.url as string,
    PROJECT_SERVICE_URL: others[1]?.url as string,
  })
})

afterAll(async () => {
  await gateway?.close()
  await Promise.all([...pods.values(), ...others].map((server) => server.close()))
  await dnsServer?.close()
})

/** Sends `count` requests one after another (over one keep-alive connection) and counts answers per pod. */
async function spread(count: number) {
  const perPod: Record<string, number> = {}
  for (let i = 0; i < count; i++) {
    const res = await call(`${gateway.url}/tasks/${i}`)
    expect(res.status).toBe(200)
    perPod[res.json.host] = (perPod[res.json.host] ?? 0) + 1
  }
  return perPod
}

const endpointsMetric = async (state: 'active' | 'ejected') =>
  Number(
    new RegExp(
      `gateway_upstream_endpoints\\{[^}]*upstream="task-service",state="${state}"[^}]*\\} (\\d+)`,
    ).exec((await call(`${gateway.url}/metrics`)).text)?.[1],
  )

const retriesMetric = async () =>
  Number(
    /gateway_upstream_retries_total\{[^}]*upstream="task-service"[^}]*\} (\d+)/.exec(
      (await call(`${gateway.url}/metrics`)).text,
    )?.[1] ?? 0,
  )

describe('headless-service discovery (DISCOVERY_MODE=dns)', () => {
  test('requests are balanced across every A record, even over one keep-alive client connection', async () => {
    expect(queries).toBeGreaterThan(0)
    expect(await spread(30)).toEqual({ '127.0.0.1': 10, '127.0.0.2': 10, '127.0.0.3': 10 })
    // The pods see the Service name as Host, not an address.
    const seen = pods.get('127.0.0.2')?.requests.at(-1)
    expect(seen?.headers.host).toBe(`${NAME}:${port}`)
    expect(await endpointsMetric('active')).toBe(3)
  })

  test('the name is re-resolved: a pod leaving or joining the record set is followed', async () => {
    records = ['127.0.0.1', '127.0.0.2']
    await sleep(500)
    expect(await spread(10)).toEqual({ '127.0.0.1': 5, '127.0.0.2': 5 })
    records = ['127.0.0.1', '127.0.0.2', '127.0.0.3']
    await sleep(500)
    expect(Object.keys(await spread(9)).sort()).toEqual(['127.0.0.1', '127.0.0.2', '127.0.0.3'])
  })

  test('a failing pod is ejected (its requests retried elsewhere), then tried again after the ejection time', async () => {
    await pods.get('127.0.0.2')?.close()
    await sleep(200) // the gateway's kept-alive connections to it have seen their close
    // A refused connection never reached the pod, so a POST is retried on the next one too (the first three
    // picks of the round-robin include the closed pod), and each POST reaches exactly one live pod once.
    const retried = await retriesMetric()
    const seenPosts = () =>
      [...pods.values()].reduce((sum, pod) => sum + pod.requests.filter((r) => r.method === 'POST').length, 0)
    const postsBefore = seenPosts()
    for (let i = 0; i < 3; i++) {
      const res = await call(`${gateway.url}/tasks`, {
        method: 'POST',
        body: JSON.stringify({ title: `refused ${i}` }),
        headers: { 'content-type': 'application/json' },
      })
      expect(res.status).toBe(200)
      expect(res.json.method).toBe('POST')
    }
    expect(seenPosts() - postsBefore).toBe(3)
    expect(await retriesMetric()).toBeGreaterThan(retried)
    // Every request still succeeds: a refused connection is retried on the next pod.
    const during = await spread(30)
    expect(during['127.0.0.2']).toBeUndefined()
    expect((during['127.0.0.1'] ?? 0) + (during['127.0.0.3'] ?? 0)).toBe(30)
    expect(await endpointsMetric('ejected')).toBe(1)
    expect(await endpointsMetric('active')).toBe(2)

    // The pod comes back; once its ejection has passed it gets its share again.
    const back = await startPod('127.0.0.2')
    await sleep(1100)
    const after = await spread(30)
    expect(after['127.0.0.2']).toBeGreaterThanOrEqual(9)
    expect(back.requests.length).toBeGreaterThanOrEqual(9)
    expect(await endpointsMetric('ejected')).toBe(0)
  })

  test('a record set that stops resolving keeps the last known pods (stale beats none)', async () => {
    records = []
    await sleep(500)
    expect(Object.keys(await spread(6)).length).toBeGreaterThan(0)
    records = ['127.0.0.1', '127.0.0.2', '127.0.0.3']
  })
})
