import type { AddressInfo } from 'node:net'
import type { Verifier } from '@task-manager/auth'
import { createServer } from '@task-manager/service-kit'
import { exportJWK, generateKeyPair, type JWK, SignJWT } from 'jose'
import { request } from 'undici'
import gatewayApp, { identity } from '../src/app.js'
import { loadGatewayConfig } from '../src/config.js'

export interface TestGateway {
  url: string
  app: ReturnType<typeof createServer>
  close(): Promise<void>
}

/** A real gateway listening on 127.0.0.1 with the given environment (quiet logs unless LOG_LEVEL is set). */
export async function startGateway(
  env: Record<string, string>,
  options: {
    verifier?: Verifier | null
    extend?: (app: ReturnType<typeof createServer>) => Promise<void>
  } = {},
): Promise<TestGateway> {
  const config = loadGatewayConfig({ LOG_LEVEL: 'silent', HOST: '127.0.0.1', ...env })
  const app = createServer(identity, config)
  await app.register(gatewayApp, { config, verifier: options.verifier })
  await options.extend?.(app)
  await app.listen({ host: '127.0.0.1', port: 0 })
  const { port } = app.server.address() as AddressInfo
  return { url: `http://127.0.0.1:${port}`, app, close: () => app.close() }
}

/** One HTTP call with the body read as text (and parsed when JSON). */
export async function call(
  url: string,
  options: {
    method?: string
    headers?: Record<string, string>
    body?: string | Buffer
    signal?: AbortSignal
  } = {},
) {
  const started = performance.now()
  const res = await request(url, {
    method: (options.method ?? 'GET') as 'GET',
    headers: options.headers,
    body: options.body,
    signal: options.signal,
  })
  const text = await res.body.text()
  const ms = performance.now() - started
  // biome-ignore lint/suspicious/noExplicitAny: test bodies are asserted field by field
  let json: any
  try {
    json = text ? JSON.parse(text) : undefined
  } catch {
    json = undefined
  }
  return { status: res.statusCode, headers: res.headers, text, json, ms }
}

/** An Ed25519 issuer like the user-service's: signs access tokens and publishes its JWKS. */
export async function testIssuer(kid = 'test-key-1') {
  const { privateKey, publicKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519' })
  const jwk: JWK = { ...(await exportJWK(publicKey)), kid, alg: 'EdDSA', use: 'sig' }
  return {
    jwks: { keys: [jwk] },
    sign: (
      sub: string,
      { role = 'user', issuer = 'task-manager', audience = 'task-manager-api', expiresIn = '15m' } = {},
    ) =>
      new SignJWT({ role })
        .setProtectedHeader({ alg: 'EdDSA', kid })
        .setSubject(sub)
        .setIssuer(issuer)
        .setAudience(audience)
        .setIssuedAt()
        .setExpirationTime(expiresIn)
        .sign(privateKey),
  }
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Sends a hand-written HTTP/1.1 request over a plain socket (for headers HTTP clients refuse to send, such as
 * Connection or Upgrade) and returns the status, headers and body of the answer.
 */
export async function rawRequest(url: string, head: string, body = '') {
  const { connect } = await import('node:net')
  const { hostname, port } = new URL(url)
  return new Promise<{ status: number; headers: Record<string, string>; body: string }>((resolve, reject) => {
    const socket = connect(Number(port), hostname)
    let data = ''
    socket.setEncoding('utf8')
    socket.on('data', (chunk) => {
      data += chunk
    })
    socket.on('error', reject)
    socket.on('end', () => {
      const [headPart = '', ...rest] = data.split('\r\n\r\n')
      const [statusLine = '', ...lines] = headPart.split('\r\n')
      const headers: Record<string, string> = {}
      for (const line of lines) {
        const colon = line.indexOf(':')
        headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim()
      }
      resolve({ status: Number(statusLine.split(' ')[1]), headers, body: rest.join('\r\n\r\n') })
    })
    socket.write(`${head.trim().split('\n').join('\r\n')}\r\nConnection: close\r\n\r\n${body}`)
  })
}
