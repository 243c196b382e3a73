import { fileURLToPath } from 'node:url'
import { spawnEntry } from '@task-manager/testing'
import { describe, expect, test } from 'vitest'
import { loadUserServiceConfig } from '../src/config.js'
import { loadKeyRing } from '../src/keys.js'
import { PasswordHasher } from '../src/passwords.js'

describe('PasswordHasher', () => {
  test('production defaults are scrypt N=2^15, r=8, p=3 (OWASP), and they verify', async () => {
    const config = loadUserServiceConfig({ DATABASE_URL: 'postgres://unused/db' })
    expect([config.PASSWORD_SCRYPT_LOG_N, config.PASSWORD_SCRYPT_PARALLELISM]).toEqual([15, 3])
    const hasher = new PasswordHasher({
      logN: config.PASSWORD_SCRYPT_LOG_N,
      r: 8,
      p: config.PASSWORD_SCRYPT_PARALLELISM,
    })
    const started = performance.now()
    const hash = await hasher.hash('correct horse battery staple')
    const elapsed = performance.now() - started
    console.log(`scrypt N=2^15 r=8 p=3: ${elapsed.toFixed(0)} ms per hash`)
    expect(hash).toMatch(/^scrypt\$15\$8\$3\$/)
    expect(await hasher.verify('correct horse battery staple', hash)).toBe(true)
    expect(await hasher.verify('correct horse battery stapler', hash)).toBe(false)
    expect(hasher.needsRehash(hash)).toBe(false)
  })

  test('a missing hash (unknown user) never verifies, whatever the password', async () => {
    const hasher = new PasswordHasher({ logN: 10, r: 8, p: 1 })
    expect(await hasher.verify('', null)).toBe(false)
    expect(await hasher.verify('correct horse battery staple', null)).toBe(false)
  })

  test('unicode passwords are normalised, so the same text typed differently matches', async () => {
    const hasher = new PasswordHasher({ logN: 10, r: 8, p: 1 })
    const composed = 'mot de passe café!'
    const decomposed = 'mot de passe cafe\u0301!'
    expect(await hasher.verify(decomposed, await hasher.hash(composed))).toBe(true)
  })
})

describe('generate-key', () => {
  test('prints a private Ed25519 JWK that JWT_PRIVATE_KEYS accepts', async () => {
    const entry = fileURLToPath(new URL('../src/generate-key.ts', import.meta.url))
    const run = spawnEntry(entry, {}, { args: ['key-2026'] })
    expect(await run.exited).toBe(0)
    const jwk = JSON.parse(run.stdout())
    expect(jwk).toMatchObject({ kty: 'OKP', crv: 'Ed25519', kid: 'key-2026', d: expect.any(String) })
    const ring = await loadKeyRing(JSON.stringify([jwk]))
    expect(ring.signing.kid).toBe('key-2026')
    expect(ring.jwks.keys[0]).not.toHaveProperty('d')
  })
})
