import { AuthConfigProperties } from '@task-manager/auth'
import { EventsConfigProperties } from '@task-manager/events'
import { BaseConfigProperties, loadConfig } from '@task-manager/service-kit'
import { type Static, Type } from 'typebox'

const url = (description: string, fallback: string) =>
  Type.String({ minLength: 1, pattern: '^https?://', default: fallback, description })

export const GatewayConfig = Type.Object({
  ...BaseConfigProperties,
  PORT: Type.Integer({ minimum: 1, maximum: 65535, default: 8006 }),
  // Only to follow token revocations (users.user.tokens_revoked): the gateway has no outbox or consumer.
  NATS_URL: EventsConfigProperties.NATS_URL,
  EVENTS_STREAM_REPLICAS: EventsConfigProperties.EVENTS_STREAM_REPLICAS,
  TRUST_PROXY: Type.String({
    default: 'false',
    description:
      'Proxies in front of the gateway (the ingress controller) whose X-Forwarded-For is believed: comma-separated ' +
      'IPs/CIDRs or loopback, linklocal, uniquelocal. "false" (the default): the client is the TCP peer',
  }),

  // Upstreams
  TASK_SERVICE_URL: url('Base URL of the task-service', 'http://127.0.0.1:8003'),
  USER_SERVICE_URL: url('Base URL of the user-service', 'http://127.0.0.1:8004'),
  PROJECT_SERVICE_URL: url('Base URL of the project-service', 'http://127.0.0.1:8005'),
  DISCOVERY_MODE: Type.Union([Type.Literal('static'), Type.Literal('dns')], {
    default: 'static',
    description:
      '`static`: connect to the URLs as given (a ClusterIP Service balances). `dns`: resolve every A record of ' +
      'each URL host (a headless Service), balance across the pods, re-resolve periodically, eject failing pods',
  }),
  DNS_SERVERS: Type.String({
    default: '',
    description:
      'Comma-separated `ip[:port]` resolvers for dns mode; empty = the system resolver (/etc/resolv.conf)',
  }),
  DNS_REFRESH_MS: Type.Integer({
    minimum: 100,
    default: 5000,
    description: 'How often dns mode re-resolves',
  }),
  EJECT_AFTER_FAILURES: Type.Integer({
    minimum: 1,
    default: 3,
    description: 'Consecutive connection failures/timeouts that eject one endpoint (dns mode)',
  }),
  EJECT_FOR_MS: Type.Integer({
    minimum: 100,
    default: 10_000,
    description: 'How long an ejected endpoint rests',
  }),

  // Failure handling
  UPSTREAM_CONNECT_TIMEOUT_MS: Type.Integer({ minimum: 10, default: 1000 }),
  UPSTREAM_RESPONSE_TIMEOUT_MS: Type.Integer({
    minimum: 1000,
    default: 10_000,
    description:
      'Time to the upstream response headers (and between body chunks) before answering 504. undici checks it ' +
      'with coarse timers (about 0.5 s resolution), hence the 1 s minimum',
  }),
  LOGIN_RESPONSE_TIMEOUT_MS: Type.Integer({
    minimum: 1000,
    default: 30_000,
    description:
      'As UPSTREAM_RESPONSE_TIMEOUT_MS for the slow-by-design routes (login and registration hash passwords); ' +
      'they also have circuits of their own',
  }),
  UPSTREAM_CONNECTIONS: Type.Integer({
    minimum: 1,
    default: 128,
    description: 'Keep-alive sockets per endpoint',
  }),
  RETRY_ATTEMPTS: Type.Integer({
    minimum: 0,
    default: 2,
    description:
      'Extra attempts after a connection failure before any response (GET/HEAD), or after one that proves the request was never sent (any method)',
  }),
  RETRY_BUDGET_RATIO: Type.Number({
    minimum: 0,
    maximum: 1,
    default: 0.2,
    description: 'Retries allowed as a share of requests per upstream (plus RETRY_BUDGET_MIN_PER_SECOND)',
  }),
  RETRY_BUDGET_MIN_PER_SECOND: Type.Integer({ minimum: 0, default: 10 }),
  BREAKER_FAILURE_THRESHOLD: Type.Integer({
    minimum: 1,
    default: 5,
    description:
      'Failures (connection errors, timeouts) in the rolling 10 s window that can open a circuit (one per ' +
      'upstream and route class), when they are also BREAKER_ERROR_PERCENTAGE of its calls',
  }),
  BREAKER_ERROR_PERCENTAGE: Type.Integer({
    minimum: 1,
    maximum: 100,
    default: 50,
    description: 'Share of failed calls in the rolling window that opens a circuit',
  }),
  BREAKER_RESET_MS: Type.Integer({
    minimum: 100,
    default: 5000,
    description: 'Time an open circuit waits before letting one probe request through (half-open)',
  }),
  HEALTH_TIMEOUT_MS: Type.Integer({
    minimum: 10,
    default: 1500,
    description: 'Per-service timeout of GET /health',
  }),
  STARTUP_UPSTREAM_WAIT_MS: Type.Integer({
    minimum: 0,
    default: 20_000,
    description:
      'A starting gateway is not ready until it has reached every service once (addresses resolved, a connection ' +
      'made: a NetworkPolicy controller may not have programmed a new pod yet), or until this long after its ' +
      'start, whichever comes first; then readiness never depends on the services again. 0: no wait',
  }),

  // Protection
  CORS_ORIGINS: Type.String({
    default: 'http://localhost:3000,http://localhost:5173,http://127.0.0.1:3000,http://127.0.0.1:5173',
    description: 'Comma-separated origins browsers may call from; `*` allows any (never with credentials)',
  }),
  CORS_MAX_AGE_SECONDS: Type.Integer({
    minimum: 0,
    default: 600,
    description: 'How long browsers cache a preflight',
  }),
  MAX_IN_FLIGHT_PER_CLIENT: Type.Integer({
    minimum: 1,
    default: 16,
    description:
      'Requests one client (verified subject, else address) may have in flight at once; more answer 429, so a ' +
      'few clients cannot hold every upstream connection',
  }),
  RATE_LIMIT_ENABLED: Type.Boolean({ default: true }),
  RATE_LIMIT_READS_PER_MINUTE: Type.Integer({ minimum: 1, default: 100 }),
  RATE_LIMIT_WRITES_PER_MINUTE: Type.Integer({ minimum: 1, default: 30 }),
  RATE_LIMIT_CREATES_PER_MINUTE: Type.Integer({ minimum: 1, default: 20 }),
  RATE_LIMIT_LOGIN_PER_MINUTE: Type.Integer({ minimum: 1, default: 10 }),
  RATE_LIMIT_WINDOW_MS: Type.Integer({
    minimum: 100,
    default: 60_000,
    description: 'Window of every budget',
  }),
  REDIS_URL: Type.String({
    default: '',
    description: 'redis:// URL; when set, rate-limit counters are shared by every gateway replica',
  }),

  // The web app (apps/web), served under /app/
  WEB_ROOT: Type.String({
    default: '',
    description:
      'Directory of the built web app (index.html + assets/); empty = web/ beside the gateway (the image) or ' +
      'else the workspace build in apps/web/dist. ' +
      'Without an index.html there, /app/ answers 404',
  }),

  // Token verification at the edge (JWKS_URL defaults to the user-service's JWKS)
  ...AuthConfigProperties,
  JWKS_URL: Type.Optional(
    Type.String({
      pattern: '^https?://',
      description: 'Public keys of the user-service; default USER_SERVICE_URL + /.well-known/jwks.json',
    }),
  ),
})
export type GatewayConfig = Static<typeof GatewayConfig>

export const loadGatewayConfig = (env?: Record<string, string | undefined>) => loadConfig(GatewayConfig, env)
