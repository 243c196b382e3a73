// `pnpm start`: the whole Task Manager on this machine. See docs/local-development.md.
//   pnpm start [--auth required|disabled] [--reset] [--data-dir DIR] [--host IP] [--base-port N]
//              [--postgres-port N] [--nats-port N] [--raw-logs] [--tracing]
// TASK_DATABASE_URL, USER_DATABASE_URL, PROJECT_DATABASE_URL: your own databases instead of the embedded one;
// NATS_URL: your own NATS instead of the local nats-server.

import { relative } from 'node:path'
import { parseArgs } from 'node:util'
import { paint, prefix, renderLine, useColour } from './logs.ts'
import {
  type DatabaseService,
  launch,
  ROOT,
  type RunningSystem,
  type ServiceName,
  StartError,
} from './system.ts'

const HELP = `Usage: pnpm start [options]

Starts PostgreSQL (embedded, data in .data/) and nats-server with JetStream (store in .data/nats/), migrates,
and runs task-service :8003, user-service :8004, project-service :8005 and the gateway :8006 as separate
processes, with their logs interleaved.

Options:
  --auth required|disabled   AUTH_MODE of every service (default required; disabled = the original open API)
  --reset                    wipe the data directory first (all users, projects, tasks, the signing key)
  --data-dir DIR             where the database, passwords and signing key live (default .data)
  --host IP                  interface the services listen on (default 127.0.0.1)
  --base-port N              task-service N, user-service N+1, project-service N+2, gateway N+3 (default 8003)
  --postgres-port N          port of the embedded PostgreSQL (default 54320)
  --nats-port N              client port of the local nats-server (default 4222; monitoring on N+4000)
  --raw-logs                 print the services' JSON log lines as they are
  --tracing                  send OpenTelemetry traces over OTLP/HTTP to OTEL_EXPORTER_OTLP_ENDPOINT, default
                             http://localhost:4318 (a local Jaeger or collector; docs/operations.md, "Traces"),
                             or with OTEL_TRACES_EXPORTER=zipkin to a local Zipkin (http://localhost:9411)
  -h, --help                 this text

Environment:
  TASK_DATABASE_URL, USER_DATABASE_URL, PROJECT_DATABASE_URL   a service's own database instead of the
                             embedded server (all three given: no embedded server at all)
  NATS_URL                   your own NATS with JetStream instead of the local nats-server (one on PATH, else
                             the pinned version provisioned into .tools/ by scripts/ensure-nats-server.sh)
  OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG, …  OpenTelemetry's own settings;
                             with OTEL_EXPORTER_OTLP_ENDPOINT set, traces are sent without --tracing too
  LOG_LEVEL, ADMIN_EMAIL, ADMIN_PASSWORD, JWT_PRIVATE_KEYS, …  passed on to the services
`

function fail(message: string): never {
  console.error(`pnpm start: ${message}\n\n${HELP}`)
  process.exit(64)
}

const { values } = (() => {
  try {
    return parseArgs({
      options: {
        auth: { type: 'string', default: 'required' },
        reset: { type: 'boolean', default: false },
        'data-dir': { type: 'string' },
        host: { type: 'string', default: '127.0.0.1' },
        'base-port': { type: 'string', default: '8003' },
        'postgres-port': { type: 'string', default: '54320' },
        'nats-port': { type: 'string', default: '4222' },
        'raw-logs': { type: 'boolean', default: false },
        tracing: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
    })
  } catch (error) {
    fail((error as Error).message)
  }
})()

if (values.help) {
  console.log(HELP)
  process.exit(0)
}
if (values.auth !== 'required' && values.auth !== 'disabled')
  fail(`--auth must be required or disabled, not ${values.auth}`)
const basePort = Number(values['base-port'])
const postgresPort = Number(values['postgres-port'])
if (!Number.isInteger(basePort) || basePort < 1 || basePort > 65532) fail('--base-port must be a port number')
if (!Number.isInteger(postgresPort) || postgresPort < 1 || postgresPort > 65535)
  fail('--postgres-port must be a port number')
const natsPort = Number(values['nats-port'])
if (!Number.isInteger(natsPort) || natsPort < 1 || natsPort > 61535)
  fail('--nats-port must be a port number (at most 61535: monitoring listens on N+4000)')

const colour = useColour()
const out = (service: string, line: string) => process.stdout.write(`${prefix(service, colour)} ${line}\n`)
const step = (message: string) => out('launcher', message)
const auth = values.auth as 'required' | 'disabled'

const databaseUrls: Partial<Record<DatabaseService, string>> = {}
for (const [name, variable] of [
  ['task-service', 'TASK_DATABASE_URL'],
  ['user-service', 'USER_DATABASE_URL'],
  ['project-service', 'PROJECT_DATABASE_URL'],
] as const) {
  const value = process.env[variable]
  if (value) databaseUrls[name] = value
}

let system: RunningSystem | undefined
let stopping = false

async function shutdown(code: number, reason: string) {
  if (stopping) return
  stopping = true
  step(`${reason}: stopping the gateway, the services, then NATS and PostgreSQL`)
  const started = Date.now()
  try {
    await system?.stop()
    step(`stopped in ${Date.now() - started} ms`)
  } catch (error) {
    step(`stop failed: ${(error as Error).message}`)
    code = code || 1
  }
  process.exit(code)
}

let interrupts = 0
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(signal, () => {
    interrupts++
    if (interrupts > 1 && system) {
      step('second interrupt: killing the services now')
      for (const service of Object.values(system.services)) service.child?.kill('SIGKILL')
      void Promise.all([system.nats?.stop(), system.postgres?.stop()]).finally(() => process.exit(130))
      return
    }
    void shutdown(0, `${signal} received`)
  })
}

const baseEnv: Record<string, string | undefined> = { ...process.env }
// OTEL_TRACES_EXPORTER=zipkin sends the spans to a Zipkin server instead (the README's local trace viewer).
const toZipkin = (baseEnv.OTEL_TRACES_EXPORTER ?? '')
  .toLowerCase()
  .split(',')
  .some((name) => name.trim() === 'zipkin')
if (values.tracing && !toZipkin) baseEnv.OTEL_EXPORTER_OTLP_ENDPOINT ||= 'http://localhost:4318'
const otlpTo = baseEnv.OTEL_EXPORTER_OTLP_ENDPOINT || baseEnv.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
const tracingTo = toZipkin
  ? `Zipkin at ${baseEnv.OTEL_EXPORTER_ZIPKIN_ENDPOINT || 'http://localhost:9411/api/v2/spans'}`
  : otlpTo && `OTLP to ${otlpTo}`

try {
  system = await launch({
    auth,
    baseEnv,
    reset: values.reset,
    dataDir: values['data-dir'],
    host: values.host,
    ports: {
      'task-service': basePort,
      'user-service': basePort + 1,
      'project-service': basePort + 2,
      gateway: basePort + 3,
    },
    postgresPort,
    natsPort,
    natsMonitorPort: natsPort + 4000,
    ...(process.env.NATS_URL ? { natsUrl: process.env.NATS_URL } : {}),
    databaseUrls,
    progress: step,
    onLog: (service, line) => out(service, values['raw-logs'] ? line : renderLine(line, colour)),
    onUnexpectedExit: (service: ServiceName, code, signal) => {
      if (stopping || !system) return
      const lines = system.services[service].lastLines().slice(-15)
      step(
        paint(
          colour,
          31,
          `${service} exited unexpectedly (${signal ?? `code ${code}`}); its last log lines:`,
        ),
      )
      for (const line of lines) out(service, line)
      void shutdown(1, `${service} is down`)
    },
  })
} catch (error) {
  if (error instanceof StartError && error.service === 'launcher') {
    step(paint(colour, 31, error.message))
  } else if (error instanceof StartError) {
    step(paint(colour, 31, `${error.service} failed to start: ${error.message}. Its last log lines:`))
    for (const line of error.lastLines) out(error.service, line)
    step('the other services, NATS and PostgreSQL were stopped')
  } else {
    step(paint(colour, 31, `start failed: ${(error as Error).stack ?? error}`))
  }
  process.exit(1)
}

if (!stopping) {
  const gateway = system.gatewayUrl
  const shownHost = values.host === '127.0.0.1' || values.host === '0.0.0.0' ? 'localhost' : values.host
  const api = `${shownHost}:${basePort + 3}`
  const dataDir = relative(ROOT, system.dataDir) || '.'
  const bold = (text: string) => paint(colour, 1, text)
  const lines = [
    '',
    bold(
      `Task Manager is running — auth mode: ${auth}${auth === 'disabled' ? ' (the original open API, no tokens)' : ''}`,
    ),
    '',
    `  gateway (the API)  ${gateway}      ← use this one`,
    `  web app            http://${api}/app/      (in a browser; built by \`pnpm start\`)`,
    ...(['task-service', 'user-service', 'project-service'] as const).map(
      (name) => `  ${name.padEnd(17)}  ${system?.services[name].url}      /health /metrics /openapi.json`,
    ),
    system.postgres
      ? `  PostgreSQL         127.0.0.1:${system.postgres.port}   databases tasks, users, projects (data in ${dataDir}/, --reset wipes it)`
      : '  PostgreSQL         your own (TASK_/USER_/PROJECT_DATABASE_URL)',
    system.nats
      ? `  NATS (JetStream)   ${system.nats.url}   domain events (store in ${dataDir}/nats/), monitoring ${system.nats.monitorUrl}`
      : '  NATS (JetStream)   your own (NATS_URL)',
    `  health             curl -s ${api}/health`,
    tracingTo
      ? `  traces             ${tracingTo} (trace_id on every log line of a request)`
      : '  traces             off (--tracing sends them to a local OTLP endpoint)',
    '',
  ]
  if (auth === 'required') {
    lines.push(
      bold('Get a token:'),
      `  curl -s ${api}/users -H 'content-type: application/json' -d '{"email":"ada@example.com","name":"Ada","password":"correct horse battery staple"}'`,
      `  TOKEN=$(curl -s ${api}/auth/token -H 'content-type: application/json' -d '{"email":"ada@example.com","password":"correct horse battery staple"}' | jq -r .access_token)`,
      `  curl -s ${api}/projects -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' -d '{"name":"Launch"}'`,
      '  Tokens last 15 minutes; the signing key is kept in the data directory, so they survive a restart.',
    )
  } else {
    lines.push(
      bold('Try it:'),
      `  curl -s ${api}/tasks -H 'content-type: application/json' -d '{"title":"Write the docs","user_id":1,"project_id":1}'`,
      `  curl -s ${api}/tasks`,
    )
  }
  lines.push('', 'Stop with Ctrl-C (the gateway, the services, then NATS and PostgreSQL).', '')
  process.stdout.write(`${lines.join('\n')}\n`)
}
