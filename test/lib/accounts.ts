// Accounts for the suites that drive the whole system through its gateway: the end-to-end tests (test/e2e, a local
// system) and the live-cluster suite (test/cluster, through the cluster's entry point).

/** What signUp needs of a suite's JSON client; both suites' clients are of this shape. */
type JsonCall = <T>(
  method: string,
  path: string,
  options: { body: unknown },
) => Promise<{ status: number; body: T }>

let counter = 0

const isShed = (answer: { status: number; body: unknown }) =>
  answer.status === 503 &&
  (answer.body as { type?: unknown } | null)?.type === 'urn:task-manager:problem:overloaded'

/** A user registered and logged in; the e-mail is unique across runs (a cluster keeps its users between them). */
export async function signUp(
  api: JsonCall,
  name: string,
): Promise<{ id: number; token: string; email: string; password: string }> {
  const email = `${name.toLowerCase()}-${Date.now()}-${process.pid}-${++counter}@example.com`
  const password = 'correct horse battery staple'
  // A shed request (503 `overloaded`, answered before any handler ran) says "retry shortly"; a client that
  // honours it retries, a few times, a second apart. On a loaded machine password hashing can shed a registration.
  let registered = await api<{ id: number }>('POST', '/users', { body: { email, name, password } })
  for (let attempt = 1; attempt < 5 && isShed(registered); attempt++) {
    await new Promise((resolve) => setTimeout(resolve, 1000))
    registered = await api<{ id: number }>('POST', '/users', { body: { email, name, password } })
  }
  if (registered.status !== 201)
    throw new Error(`register ${name}: ${registered.status} ${JSON.stringify(registered.body)}`)
  const login = await api<{ access_token: string }>('POST', '/auth/token', { body: { email, password } })
  if (login.status !== 200) throw new Error(`login ${name}: ${login.status} ${JSON.stringify(login.body)}`)
  return { id: registered.body.id, token: login.body.access_token, email, password }
}
