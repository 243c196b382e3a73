import { Agent, request } from 'node:http'

export { signUp } from '../../lib/accounts.ts'

export interface Answer<T = any> {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: T
  ms: number
}

export interface CallOptions {
  token?: string
  body?: unknown
  headers?: Record<string, string>
  timeoutMs?: number
}

export type Api = <T = any>(method: string, path: string, options?: CallOptions) => Promise<Answer<T>>

const agent = new Agent({ keepAlive: true, maxSockets: 64 })

/**
 * A JSON client of the cluster's entry point for one host name: Traefik picks the HTTPRoute or the Ingress
 * by the Host header, so the same address serves both paths. (fetch cannot set Host, node:http can.)
 * Every call has a deadline; a network error is an answer with status 0.
 */
export function client(entryUrl: string, host: string): Api {
  const base = new URL(entryUrl)
  return (method, path, options = {}) =>
    new Promise<Answer>((resolve) => {
      const started = performance.now()
      const headers: Record<string, string> = { host, ...options.headers }
      if (options.token) headers.authorization = `Bearer ${options.token}`
      const payload = options.body === undefined ? undefined : JSON.stringify(options.body)
      if (payload !== undefined) {
        headers['content-type'] ??= 'application/json'
        headers['content-length'] = String(Buffer.byteLength(payload))
      }
      const req = request(
        {
          host: base.hostname,
          port: base.port || 80,
          method,
          path,
          headers,
          agent,
          timeout: options.timeoutMs ?? 15_000,
        },
        (res) => {
          const chunks: Buffer[] = []
          res.on('data', (chunk: Buffer) => chunks.push(chunk))
          res.on('error', (error) =>
            resolve({ status: 0, headers: {}, body: String(error), ms: performance.now() - started }),
          )
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString()
            let body: any = text
            if (text && String(res.headers['content-type'] ?? '').includes('json')) {
              try {
                body = JSON.parse(text)
              } catch {
                // left as text
              }
            }
            resolve({
              status: res.statusCode ?? 0,
              headers: res.headers,
              body,
              ms: performance.now() - started,
            })
          })
        },
      )
      req.on('timeout', () => req.destroy(new Error('deadline exceeded')))
      req.on('error', (error) =>
        resolve({ status: 0, headers: {}, body: String(error), ms: performance.now() - started }),
      )
      req.end(payload)
    })
}
