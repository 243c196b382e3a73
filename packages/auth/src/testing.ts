// Test helpers: a real token issuer (Ed25519 keys, a JWKS served over HTTP on 127.0.0.1) and forged
// tokens for the attacks every service must refuse. Import from '@task-manager/auth/testing' in tests only.
import { randomUUID } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { type CryptoKey, exportJWK, exportSPKI, generateKeyPair, type JWK, SignJWT } from 'jose'
import { DEFAULT_AUDIENCE, DEFAULT_ISSUER } from './config.js'
import type { Role } from './principal.js'

export interface TestClaims {
  sub: number | string
  role?: Role | string
  /** Overrides of the registered claims; `exp`/`iat` in seconds since the epoch. */
  iss?: string
  aud?: string | string[]
  exp?: number
  iat?: number
  [claim: string]: unknown
}

export interface SignOptions {
  /** Sign with this (still held) key instead of the current one. */
  kid?: string
  /** Claims to leave out entirely, e.g. ['exp'] for a token that never expires. */
  omit?: string[]
}

export interface TestIssuer {
  jwksUrl: string
  issuer: string
  audience: string
  /** kid of the key that signs by default (the newest). */
  readonly kid: string
  /** How many times the JWKS was fetched. */
  readonly jwksRequests: number
  /** A valid EdDSA access token (15 min) unless the claims override it. */
  sign(claims: TestClaims, options?: SignOptions): Promise<string>
  /** Adds a new key, publishes it next to the others and makes it the signing key; returns its kid. */
  rotate(): Promise<string>
  /** Stops publishing a key (tokens signed with it must then be refused). */
  removeKey(kid: string): void
  /** An unsigned token (`alg: none`) carrying these claims. */
  forgeUnsigned(claims: TestClaims): string
  /** An HS256 token whose HMAC secret is the issuer's public key (the algorithm-confusion attack). */
  forgeHmacWithPublicKey(claims: TestClaims): Promise<string>
  /** A validly shaped EdDSA token signed by a key the issuer never published. */
  forgeWithForeignKey(claims: TestClaims): Promise<string>
  close(): Promise<void>
}

interface HeldKey {
  kid: string
  privateKey: CryptoKey
  publicKey: CryptoKey
  publicJwk: JWK
}

async function newKey(): Promise<HeldKey> {
  const kid = randomUUID()
  const { privateKey, publicKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true })
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg: 'EdDSA', use: 'sig' }
  return { kid, privateKey, publicKey, publicJwk }
}

const base64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')

/** Starts an issuer with one key; its JWKS is served at `jwksUrl` until `close()`. */
export async function startTestIssuer(
  options: { issuer?: string; audience?: string } = {},
): Promise<TestIssuer> {
  const issuer = options.issuer ?? DEFAULT_ISSUER
  const audience = options.audience ?? DEFAULT_AUDIENCE
  const first = await newKey()
  const keys: HeldKey[] = [first]
  const published = new Set<string>([first.kid])
  let jwksRequests = 0

  const server: Server = createServer((request, response) => {
    if (request.method === 'GET' && request.url === '/.well-known/jwks.json') {
      jwksRequests += 1
      const body = JSON.stringify({
        keys: keys.filter((key) => published.has(key.kid)).map((key) => key.publicJwk),
      })
      response.writeHead(200, { 'content-type': 'application/json' }).end(body)
      return
    }
    response.writeHead(404).end()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo

  const current = () => keys[keys.length - 1] as HeldKey
  const payloadOf = ({ sub, role = 'user', iss, aud, exp, iat, ...rest }: TestClaims) => {
    const now = Math.floor(Date.now() / 1000)
    return {
      ...rest,
      role,
      sub: String(sub),
      iss: iss ?? issuer,
      aud: aud ?? audience,
      iat: iat ?? now,
      exp: exp ?? now + 15 * 60,
    }
  }

  return {
    jwksUrl: `http://127.0.0.1:${port}/.well-known/jwks.json`,
    issuer,
    audience,
    get kid() {
      return current().kid
    },
    get jwksRequests() {
      return jwksRequests
    },
    async sign(claims, signOptions = {}) {
      const key = signOptions.kid ? keys.find((held) => held.kid === signOptions.kid) : current()
      if (!key) throw new Error(`startTestIssuer: no key ${signOptions.kid}`)
      const payload: Record<string, unknown> = payloadOf(claims)
      for (const claim of signOptions.omit ?? []) delete payload[claim]
      return new SignJWT(payload)
        .setProtectedHeader({ alg: 'EdDSA', kid: key.kid, typ: 'JWT' })
        .sign(key.privateKey)
    },
    async rotate() {
      const key = await newKey()
      keys.push(key)
      published.add(key.kid)
      return key.kid
    },
    removeKey(kid) {
      published.delete(kid)
    },
    forgeUnsigned(claims) {
      return `${base64url({ alg: 'none', typ: 'JWT', kid: current().kid })}.${base64url(payloadOf(claims))}.`
    },
    async forgeHmacWithPublicKey(claims) {
      const secret = new TextEncoder().encode(await exportSPKI(current().publicKey))
      return new SignJWT(payloadOf(claims))
        .setProtectedHeader({ alg: 'HS256', kid: current().kid, typ: 'JWT' })
        .sign(secret)
    },
    async forgeWithForeignKey(claims) {
      const foreign = await newKey()
      return new SignJWT(payloadOf(claims))
        .setProtectedHeader({ alg: 'EdDSA', kid: current().kid, typ: 'JWT' })
        .sign(foreign.privateKey)
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections()
        server.close((error) => (error ? reject(error) : resolve()))
      }),
  }
}
