// The whole Task Manager on one machine: PostgreSQL (embedded, or the URLs you give), one database and
// role per service, a nats-server with JetStream (or the NATS_URL you give) for the domain events,
// migrations, then the four services as separate OS processes. Used by `pnpm start`
// (scripts/start/main.ts) and by the end-to-end suites (test/e2e), which start it on free ports.
//
// Services run from their TypeScript sources through tsx (`--conditions=@task-manager/source`), the way
// the tests run them: nothing to build before the first start and nothing stale after an edit or a
// `git pull`, at the price of about a second of start-up per process. Containers and the Helm charts run
// the compiled `dist/server.js`.

import { type ChildProcess, spawn } from 'node:child_process'
import { generateKeyPairSync, randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { type NatsServer, startNatsServer } from '../../packages/local-nats/src/index.ts'
import {
  type LocalPostgres,
  persistentSecret,
  provisionServiceDatabase,
  startLocalPostgres,
} from '../../packages/local-postgres/src/index.ts'

export const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)))

export type ServiceName = 'user-service' | 'project-service' | 'task-service' | 'gateway'
export type DatabaseService = Exclude<ServiceName, 'gateway'>

interface ServiceSpec {
  name: ServiceName
  defaultPort: number
  /** Database name and role of a service that owns one; `env` is the variable that replaces it. */
  database?: { name: string; role: string; env: string }
}

export const SERVICES: readonly ServiceSpec[] = [
  {
    name: 'user-service',
    defaultPort: 8004,
    database: { name: 'users', role: 'user_service', env: 'USER_DATABASE_URL' },
  },
  {
    name: 'project-service',
    defaultPort: 8005,
    database: { name: 'projects', role: 'project_service', env: 'PROJECT_DATABASE_URL' },
  },
  {
    name: 'task-service',
    defaultPort: 8003,
    database: { name: 'tasks', role: 'task_service', env: 'TASK_DATABASE_URL' },
  },
  { name: 'gateway', defaultPort: 8006 },
]

export interface LaunchOptions {
  /** Where the cluster, the role passwords and the signing key live. Default `<repo>/.data`. */
  dataDir?: string
  /** Wipe the data directory first. */
  reset?: boolean
  auth?: 'required' | 'disabled'
  /** Interface every service listens on. Default 127.0.0.1. */
  host?: string
  ports?: Partial<Record<ServiceName, number>>
  postgresPort?: number
  /** Extra `postgres -c` settings (tests use fsync=off). */
  postgresSettings?: Record<string, string>
  /** Client port of the local nats-server. Default: a free one (`pnpm start` asks for 4222). */
  natsPort?: number
  /** Its HTTP monitoring port (/healthz, /varz, /jsz). Default: a free one (`pnpm start`: 8222). */
  natsMonitorPort?: number
  /** Your own NATS (with JetStream) instead of the local nats-server. */
  natsUrl?: string
  /** Your own databases instead of the embedded server (each service's own URL). */
  databaseUrls?: Partial<Record<DatabaseService, string>>
  /** Extra environment per service (wins over the launcher's). */
  env?: Partial<Record<ServiceName, Record<string, string>>>
  /** Environment every process starts from. Default process.env. */
  baseEnv?: Record<string, string | undefined>
  /** How long a service may take to answer /health/ready with 200. */
  readyTimeoutMs?: number
  /** Progress of each step. */
  progress?: (message: string) => void
  /** Every output line of every service (and PostgreSQL's start-up messages). */
  onLog?: (service: string, line: string) => void
  /** A service process exited without `stop()`/`restart()`/`kill()` asking for it. */
  onUnexpectedExit?: (service: ServiceName, code: number | null, signal: NodeJS.Signals | null) => void
}

export class StartError extends Error {
  override name = 'StartError'
  constructor(
    message: string,
    readonly service: string,
    readonly lastLines: string[],
  ) {
    super(message)
  }
}

const LAST_LINES = 40

export class ServiceProcess {
  child: ChildProcess | undefined
  exited: Promise<void> = Promise.resolve()
  private lines: string[] = []
  private expectingExit = false

  constructor(
    readonly name: ServiceName,
    readonly port: number,
    readonly host: string,
    private readonly env: Record<string, string | undefined>,
    private readonly options: LaunchOptions,
  ) {}

  get url(): string {
    return `http://${this.host}:${this.port}`
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null
  }

  lastLines(): string[] {
    return [...this.lines]
  }

  /** Starts the process and waits until /health/ready answers 200. */
  async start(): Promise<void> {
    this.lines = []
    this.expectingExit = false
    const child = spawnTs(join(ROOT, 'services', this.name, 'src', 'server.ts'), this.env)
    this.child = child
    this.exited = once(child, 'exit').then(() => {})
    collect(child, (line) => {
      this.lines.push(line)
      if (this.lines.length > LAST_LINES) this.lines.shift()
      this.options.onLog?.(this.name, line)
    })
    child.once('exit', (code, signal) => {
      if (!this.expectingExit) this.options.onUnexpectedExit?.(this.name, code, signal)
    })
    const deadline = Date.now() + (this.options.readyTimeoutMs ?? 60_000)
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new StartError(
          `${this.name} exited during start (${child.signalCode ?? `code ${child.exitCode}`})`,
          this.name,
          this.lastLines(),
        )
      }
      try {
        const response = await fetch(`${this.url}/health/ready`, { signal: AbortSignal.timeout(1000) })
        await response.arrayBuffer()
        if (response.status === 200) return
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) {
        await this.kill('SIGKILL')
        throw new StartError(
          `${this.name} was not ready within ${Math.round((this.options.readyTimeoutMs ?? 60_000) / 1000)} s`,
          this.name,
          this.lastLines(),
        )
      }
      await sleep(100)
    }
  }

  /** Sends a signal and waits for the exit (SIGKILL after `forceAfterMs`). */
  async kill(signal: NodeJS.Signals = 'SIGTERM', forceAfterMs = 30_000): Promise<void> {
    const child = this.child
    if (!child || child.exitCode !== null || child.signalCode !== null) return
    this.expectingExit = true
    child.kill(signal)
    const timer = setTimeout(() => child.kill('SIGKILL'), forceAfterMs)
    await this.exited
    clearTimeout(timer)
  }

  /** SIGSTOP/SIGCONT: a process that accepts connections (the kernel does) but answers nothing. */
  freeze(): void {
    this.child?.kill('SIGSTOP')
  }
  thaw(): void {
    this.child?.kill('SIGCONT')
  }
}

export interface RunningSystem {
  authMode: 'required' | 'disabled'
  dataDir: string
  gatewayUrl: string
  services: Record<ServiceName, ServiceProcess>
  /** The embedded server; undefined when every service got its own URL. */
  postgres: LocalPostgres | undefined
  /** The local nats-server (JetStream store in `<dataDir>/nats`); undefined with your own NATS_URL. */
  nats: NatsServer | undefined
  /** What every service and the gateway get as NATS_URL. */
  natsUrl: string
  /** What each service connects with (passwords included: keep out of logs). */
  databaseUrls: Record<DatabaseService, string>
  /** Services first (gateway, then the rest together), then NATS and the database. */
  stop(): Promise<void>
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

function spawnTs(entry: string, env: Record<string, string | undefined>): ChildProcess {
  const guard = pathToFileURL(join(ROOT, 'scripts', 'start', 'exit-with-launcher.mjs')).href
  // The kit's tracing entry, as the image runs it (`node --import @task-manager/service-kit/instrument`): it
  // does nothing unless OTEL_EXPORTER_OTLP_ENDPOINT is set (`pnpm start --tracing`).
  const instrument = pathToFileURL(join(ROOT, 'packages', 'service-kit', 'src', 'instrument.ts')).href
  const args = [
    '--import',
    guard,
    '--import',
    'tsx',
    '--import',
    instrument,
    '--conditions=@task-manager/source',
    entry,
  ]
  return spawn(process.execPath, args, {
    cwd: ROOT,
    env,
    // Own process group: a Ctrl-C in the terminal reaches the launcher only, which stops things in order.
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
}

function collect(child: ChildProcess, onLine: (line: string) => void) {
  for (const stream of [child.stdout, child.stderr]) {
    if (stream) createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY }).on('line', onLine)
  }
}

/** Runs a service's `src/migrate.ts` against its database; throws with its output when it fails. */
async function migrate(name: DatabaseService, env: Record<string, string | undefined>): Promise<void> {
  const child = spawnTs(join(ROOT, 'services', name, 'src', 'migrate.ts'), env)
  const lines: string[] = []
  collect(child, (line) => lines.push(line))
  const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null]
  if (code !== 0) {
    throw new StartError(
      `migrations of ${name} failed (${signal ?? `code ${code}`})`,
      name,
      lines.slice(-LAST_LINES),
    )
  }
}

/**
 * The signing key of the local user-service, kept in the data directory so tokens stay valid across
 * restarts (a key generated per start would log everyone out). Ed25519 from node:crypto, as a private
 * JWK with a kid: the JWT_PRIVATE_KEYS format.
 */
async function localSigningKeys(dataDir: string): Promise<string> {
  return persistentSecret(join(dataDir, 'jwt-private-keys.json'), () => {
    const { privateKey } = generateKeyPairSync('ed25519')
    const jwk = privateKey.export({ format: 'jwk' })
    return JSON.stringify([{ ...jwk, kid: `local-${randomUUID().slice(0, 8)}`, alg: 'EdDSA', use: 'sig' }])
  })
}

export async function launch(options: LaunchOptions = {}): Promise<RunningSystem> {
  const progress = options.progress ?? (() => {})
  const host = options.host ?? '127.0.0.1'
  const authMode = options.auth ?? 'required'
  const dataDir = resolve(options.dataDir ?? join(ROOT, '.data'))
  const baseEnv = options.baseEnv ?? process.env
  const port = (name: ServiceName) =>
    options.ports?.[name] ?? (SERVICES.find((spec) => spec.name === name) as ServiceSpec).defaultPort
  const url = (name: ServiceName) => `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${port(name)}`

  if (options.reset) {
    progress(`reset: removing ${dataDir}`)
    await rm(dataDir, { recursive: true, force: true })
  }
  await mkdir(dataDir, { recursive: true })
  const releaseLock = await lockDataDir(dataDir)

  // 1. Databases: the URLs given, else one embedded server with a database and a role per service.
  const databaseUrls = {} as Record<DatabaseService, string>
  let postgres: LocalPostgres | undefined
  const needEmbedded = SERVICES.filter(
    (spec) => spec.database && !options.databaseUrls?.[spec.name as DatabaseService],
  )
  for (const spec of SERVICES) {
    const given = options.databaseUrls?.[spec.name as DatabaseService]
    if (spec.database && given) {
      databaseUrls[spec.name as DatabaseService] = given
      progress(`${spec.name}: using the database from ${spec.database.env}`)
    }
  }
  let nats: NatsServer | undefined
  // The broker and the database go last: draining services still publish (relay) and commit.
  const stopInfrastructure = async () => {
    await Promise.all([nats?.stop(), postgres?.stop()])
  }
  const stopAll = async (services: ServiceProcess[]) => {
    const gateway = services.find((service) => service.name === 'gateway')
    await gateway?.kill('SIGTERM')
    await Promise.all(services.map((service) => service.kill('SIGTERM')))
    await stopInfrastructure()
  }
  try {
    if (needEmbedded.length > 0) {
      const postgresPort = options.postgresPort ?? 54320
      progress(`PostgreSQL: starting the embedded server on 127.0.0.1:${postgresPort} (data in ${dataDir})`)
      const started = Date.now()
      postgres = await startLocalPostgres({
        dataDir,
        port: postgresPort,
        settings: options.postgresSettings,
        log: (line) => progress(`PostgreSQL: ${line}`),
      }).catch((error: Error) => {
        const [first = '', ...rest] = error.message.split('\n')
        throw new StartError(first, 'postgres', rest.slice(-LAST_LINES))
      })
      progress(`PostgreSQL: ready in ${Date.now() - started} ms`)
      for (const spec of needEmbedded) {
        const database = spec.database as NonNullable<ServiceSpec['database']>
        const password = await persistentSecret(join(dataDir, `${database.role}-password`))
        databaseUrls[spec.name as DatabaseService] = await provisionServiceDatabase(postgres.adminUrl, {
          database: database.name,
          role: database.role,
          password,
        })
        progress(
          `PostgreSQL: database "${database.name}" owned by role "${database.role}" (no other role may connect)`,
        )
      }
    }

    // 2. NATS with JetStream: the local server (store in the data directory, kept across restarts), or yours.
    let natsUrl = options.natsUrl
    if (natsUrl) {
      progress('NATS: using the server from NATS_URL')
    } else {
      const natsStarted = Date.now()
      const storeDir = join(dataDir, 'nats')
      progress(
        `NATS: starting nats-server with JetStream on 127.0.0.1:${options.natsPort ?? '(a free port)'} (store in ${storeDir})`,
      )
      nats = await startNatsServer({
        storeDir,
        port: options.natsPort,
        monitorPort: options.natsMonitorPort,
        pidFile: join(dataDir, 'nats.pid'),
        onTakeOver: (pid) =>
          progress(`NATS: stopping a nats-server left running on this data directory (pid ${pid})`),
        // Its warnings and errors only: the start-up banner would bury the services' lines.
        log: (line) => {
          if (!/\[(INF|DBG|TRC)\]/.test(line)) options.onLog?.('nats', line)
        },
      }).catch((error: Error) => {
        const [first = '', ...rest] = error.message.split('\n')
        throw new StartError(first, 'nats', rest.slice(-LAST_LINES))
      })
      natsUrl = nats.url
      progress(`NATS: ready on ${nats.url} in ${Date.now() - natsStarted} ms (monitoring ${nats.monitorUrl})`)
    }

    // 3. Migrations, each service's own, in parallel.
    const common: Record<string, string | undefined> = {
      ...baseEnv,
      HOST: host,
      AUTH_MODE: authMode,
      LOG_LEVEL: baseEnv.LOG_LEVEL ?? 'info',
      MIGRATE_ON_START: 'false',
      JWKS_URL: `${url('user-service')}/.well-known/jwks.json`,
      USER_SERVICE_URL: url('user-service'),
      PROJECT_SERVICE_URL: url('project-service'),
      TASK_SERVICE_URL: url('task-service'),
      NATS_URL: natsUrl,
    }
    delete common.DATABASE_URL
    delete common.PORT
    const started = Date.now()
    progress('migrations: user-service, project-service, task-service')
    await Promise.all(
      (['user-service', 'project-service', 'task-service'] as const).map((name) =>
        migrate(name, { ...common, ...options.env?.[name], DATABASE_URL: databaseUrls[name] }),
      ),
    )
    progress(`migrations: up to date in ${Date.now() - started} ms`)

    // 4. The services, all at once; each is waited for until ready.
    const signingKeys = baseEnv.JWT_PRIVATE_KEYS ?? (await localSigningKeys(dataDir))
    const services = {} as Record<ServiceName, ServiceProcess>
    for (const spec of SERVICES) {
      const env: Record<string, string | undefined> = {
        ...common,
        PORT: String(port(spec.name)),
        OTEL_SERVICE_NAME: spec.name,
        ...(spec.database ? { DATABASE_URL: databaseUrls[spec.name as DatabaseService] } : {}),
        ...(spec.name === 'user-service' ? { JWT_PRIVATE_KEYS: signingKeys } : {}),
        ...options.env?.[spec.name],
      }
      services[spec.name] = new ServiceProcess(
        spec.name,
        port(spec.name),
        host === '0.0.0.0' ? '127.0.0.1' : host,
        env,
        options,
      )
    }
    const all = Object.values(services)
    progress(`services: starting ${all.map((service) => `${service.name} :${service.port}`).join(', ')}`)
    const startedServices = Date.now()
    const starting = all.map(async (service) => {
      const at = Date.now()
      await service.start()
      progress(`services: ${service.name} ready on :${service.port} in ${Date.now() - at} ms`)
    })
    try {
      await Promise.all(starting)
    } catch (error) {
      // The first failure stops the rest at once (they may still be starting).
      await stopAll(all)
      await Promise.allSettled(starting)
      throw error
    }
    progress(`services: all ready in ${Date.now() - startedServices} ms`)

    return {
      authMode,
      dataDir,
      gatewayUrl: services.gateway.url,
      services,
      postgres,
      nats,
      natsUrl,
      databaseUrls,
      stop: async () => {
        await stopAll(all)
        await releaseLock()
      },
    }
  } catch (error) {
    await stopInfrastructure()
    await releaseLock()
    throw error
  }
}

/**
 * One launcher per data directory: a second `pnpm start` on the same checkout must not take over (and
 * stop) the PostgreSQL of the first. The lock is a file holding the launcher's pid; a lock whose process
 * is gone is stale and taken over.
 */
async function lockDataDir(dataDir: string): Promise<() => Promise<void>> {
  const file = join(dataDir, 'launcher.pid')
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await writeFile(file, `${process.pid}\n`, { flag: 'wx' })
      return () => rm(file, { force: true })
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
    }
    const holder = Number((await readFile(file, 'utf8').catch(() => '')).trim())
    let alive = false
    if (Number.isInteger(holder) && holder > 0) {
      try {
        process.kill(holder, 0)
        alive = true
      } catch {
        alive = false
      }
    }
    if (alive) {
      throw new StartError(
        `another launcher (pid ${holder}) is using ${dataDir}; stop it first, or give this one its own --data-dir and --base-port`,
        'launcher',
        [],
      )
    }
    await rm(file, { force: true })
  }
  throw new StartError(`could not lock ${dataDir}`, 'launcher', [])
}
