import { randomUUID } from 'node:crypto'
import { ConfigError } from '@task-manager/service-kit'
import { type CryptoKey, exportJWK, generateKeyPair, importJWK, type JWK, SignJWT } from 'jose'

/** A public key as the JWKS publishes it. */
export interface PublishedJwk {
  kty: string
  crv: string
  x: string
  kid: string
  alg: 'EdDSA'
  use: 'sig'
}

export interface SigningKey {
  kid: string
  privateKey: CryptoKey
  publicJwk: PublishedJwk
}

export interface KeyRing {
  /** The first key: it signs every new token. */
  signing: SigningKey
  /** Every key, published so tokens signed by any of them verify (rotation without downtime). */
  all: SigningKey[]
  jwks: { keys: PublishedJwk[] }
  /** True when no key was configured and one was made up at start. */
  generated: boolean
}

function publicPart(jwk: JWK & { x: string }, kid: string): PublishedJwk {
  return { kty: 'OKP', crv: 'Ed25519', x: jwk.x, kid, alg: 'EdDSA', use: 'sig' }
}

async function importPrivateJwk(value: unknown, index: number): Promise<SigningKey> {
  const jwk = value as JWK
  const where = `JWT_PRIVATE_KEYS[${index}]`
  if (!jwk || typeof jwk !== 'object') throw new ConfigError(`${where} is not a JWK object`)
  if (typeof jwk.kid !== 'string' || jwk.kid.length === 0) throw new ConfigError(`${where} has no kid`)
  if (jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' || typeof jwk.d !== 'string' || typeof jwk.x !== 'string') {
    throw new ConfigError(
      `${where} (kid ${jwk.kid}) must be a private Ed25519 JWK (kty OKP, crv Ed25519, d, x)`,
    )
  }
  try {
    const privateKey = (await importJWK({ ...jwk, alg: 'EdDSA' }, 'EdDSA')) as CryptoKey
    return { kid: jwk.kid, privateKey, publicJwk: publicPart(jwk as JWK & { x: string }, jwk.kid) }
  } catch (error) {
    throw new ConfigError(`${where} (kid ${jwk.kid}) is not a usable key: ${(error as Error).message}`)
  }
}

/** A fresh Ed25519 key pair as a private JWK with a kid: what JWT_PRIVATE_KEYS holds. */
export async function generatePrivateJwk(kid: string = randomUUID()): Promise<JWK> {
  const { privateKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true })
  return { ...(await exportJWK(privateKey)), kid, alg: 'EdDSA', use: 'sig' }
}

/**
 * The signing keys from JWT_PRIVATE_KEYS (a JSON array of private JWKs; the first signs, all are
 * published). Without it, one key is generated for this process: fine for development, wrong for more
 * than one replica or across restarts, so the caller warns.
 */
export async function loadKeyRing(configured: string | undefined): Promise<KeyRing> {
  let generated = false
  let entries: unknown[]
  if (configured === undefined || configured.trim() === '') {
    entries = [await generatePrivateJwk()]
    generated = true
  } else {
    try {
      entries = JSON.parse(configured)
    } catch {
      throw new ConfigError('JWT_PRIVATE_KEYS is not valid JSON (expected an array of private JWKs)')
    }
    if (!Array.isArray(entries) || entries.length === 0) {
      throw new ConfigError('JWT_PRIVATE_KEYS must be a non-empty JSON array of private JWKs')
    }
  }
  const all = await Promise.all(entries.map((entry, index) => importPrivateJwk(entry, index)))
  const kids = new Set(all.map((key) => key.kid))
  if (kids.size !== all.length) throw new ConfigError('JWT_PRIVATE_KEYS has two keys with the same kid')
  return {
    signing: all[0] as SigningKey,
    all,
    jwks: { keys: all.map((key) => key.publicJwk) },
    generated,
  }
}

export interface TokenSettings {
  issuer: string
  audience: string
  ttlSeconds: number
}

/** A signed access token for a user: EdDSA, kid, iss, aud, sub, role, iat, exp, jti. */
export async function issueAccessToken(
  keys: KeyRing,
  settings: TokenSettings,
  user: { id: number; role: string },
): Promise<string> {
  // `iat` keeps milliseconds (a NumericDate may be fractional, RFC 7519 §2): a token issued right after a
  // logout or password change in the same second must not fall under that second's revocation.
  const issuedAt = Date.now() / 1000
  const now = Math.floor(issuedAt)
  return new SignJWT({ role: user.role })
    .setProtectedHeader({ alg: 'EdDSA', kid: keys.signing.kid, typ: 'JWT' })
    .setSubject(String(user.id))
    .setIssuer(settings.issuer)
    .setAudience(settings.audience)
    .setIssuedAt(issuedAt)
    .setExpirationTime(now + settings.ttlSeconds)
    .setJti(randomUUID())
    .sign(keys.signing.privateKey)
}
