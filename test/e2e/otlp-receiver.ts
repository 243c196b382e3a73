import { once } from 'node:events'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'

// An OTLP/HTTP trace receiver in the test process: the services export to it exactly as they would to a
// collector (OTEL_EXPORTER_OTLP_ENDPOINT, protocol http/json), and the test reads the decoded spans.

export interface ReceivedSpan {
  service: string
  traceId: string
  spanId: string
  /** '' for a root span. */
  parentSpanId: string
  name: string
  /** OTLP SpanKind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer. */
  kind: number
  attributes: Record<string, unknown>
  links: { traceId: string; spanId: string }[]
  startNs: bigint
  endNs: bigint
}

export interface OtlpReceiver {
  /** Base URL for OTEL_EXPORTER_OTLP_ENDPOINT (the exporters append /v1/traces). */
  url: string
  spans: ReceivedSpan[]
  /** Export requests that were not OTLP/JSON trace requests (a test asserts there are none). */
  rejected: string[]
  close(): Promise<void>
}

export const SpanKind = { INTERNAL: 1, SERVER: 2, CLIENT: 3, PRODUCER: 4, CONSUMER: 5 } as const

/** OTLP/JSON ids are hex; tolerate base64 (the protobuf JSON mapping) too. */
function hexId(value: unknown): string {
  if (typeof value !== 'string' || value === '') return ''
  if (/^[0-9a-f]+$/i.test(value) && (value.length === 32 || value.length === 16)) return value.toLowerCase()
  return Buffer.from(value, 'base64').toString('hex')
}

interface AnyValue {
  stringValue?: string
  intValue?: string | number
  doubleValue?: number
  boolValue?: boolean
  arrayValue?: { values?: AnyValue[] }
}

function decodeValue(value: AnyValue | undefined): unknown {
  if (value === undefined) return undefined
  if (value.stringValue !== undefined) return value.stringValue
  if (value.intValue !== undefined) return Number(value.intValue)
  if (value.doubleValue !== undefined) return value.doubleValue
  if (value.boolValue !== undefined) return value.boolValue
  if (value.arrayValue !== undefined) return (value.arrayValue.values ?? []).map(decodeValue)
  return undefined
}

function attributesOf(list: { key: string; value?: AnyValue }[] | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const { key, value } of list ?? []) out[key] = decodeValue(value)
  return out
}

interface ExportRequest {
  resourceSpans?: {
    resource?: { attributes?: { key: string; value?: AnyValue }[] }
    scopeSpans?: {
      spans?: {
        traceId?: string
        spanId?: string
        parentSpanId?: string
        name?: string
        kind?: number
        attributes?: { key: string; value?: AnyValue }[]
        links?: { traceId?: string; spanId?: string }[]
        startTimeUnixNano?: string | number
        endTimeUnixNano?: string | number
      }[]
    }[]
  }[]
}

export function decodeExport(request: ExportRequest): ReceivedSpan[] {
  const spans: ReceivedSpan[] = []
  for (const resourceSpans of request.resourceSpans ?? []) {
    const service = String(attributesOf(resourceSpans.resource?.attributes)['service.name'] ?? '')
    for (const scope of resourceSpans.scopeSpans ?? []) {
      for (const span of scope.spans ?? []) {
        spans.push({
          service,
          traceId: hexId(span.traceId),
          spanId: hexId(span.spanId),
          parentSpanId: hexId(span.parentSpanId),
          name: span.name ?? '',
          kind: span.kind ?? 0,
          attributes: attributesOf(span.attributes),
          links: (span.links ?? []).map((link) => ({
            traceId: hexId(link.traceId),
            spanId: hexId(link.spanId),
          })),
          startNs: BigInt(span.startTimeUnixNano ?? 0),
          endNs: BigInt(span.endTimeUnixNano ?? 0),
        })
      }
    }
  }
  return spans
}

export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = []
  const rejected: string[] = []
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => {
      const type = req.headers['content-type'] ?? ''
      if (req.method !== 'POST' || req.url !== '/v1/traces' || !type.includes('application/json')) {
        rejected.push(`${req.method} ${req.url} ${type}`)
        res.writeHead(415).end()
        return
      }
      try {
        spans.push(...decodeExport(JSON.parse(Buffer.concat(chunks).toString('utf8')) as ExportRequest))
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
      } catch (error) {
        rejected.push(`undecodable export: ${(error as Error).message}`)
        res.writeHead(400).end()
      }
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    spans,
    rejected,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}
