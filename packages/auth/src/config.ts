import { ConfigError } from '@task-manager/service-kit'
import { Type } from 'typebox'

export const DEFAULT_ISSUER = 'task-manager'
export const DEFAULT_AUDIENCE = 'task-manager-api'

/**
 * Settings every token verifier (gateway and each service) adds to its config schema. JWKS_URL is
 * optional so a service can start with AUTH_MODE=disabled and no user-service; `requireJwksUrl` (a
 * config.ts check) refuses AUTH_MODE=required without it.
 */
export const AuthConfigProperties = {
  JWKS_URL: Type.Optional(
    Type.String({
      // A pattern, not `format: 'uri'`: the kit's env validator has no format plugins.
      pattern: '^https?://',
      description:
        'Where the user-service publishes its public keys, e.g. http://user-service:8004/.well-known/jwks.json',
    }),
  ),
  JWT_ISSUER: Type.String({ minLength: 1, default: DEFAULT_ISSUER, description: 'Expected `iss` claim' }),
  JWT_AUDIENCE: Type.String({ minLength: 1, default: DEFAULT_AUDIENCE, description: 'Expected `aud` claim' }),
}

/** Config check (kit `loadConfig`): verifying tokens needs somewhere to get the keys from. */
export function requireJwksUrl(config: { AUTH_MODE: 'required' | 'disabled'; JWKS_URL?: string }): void {
  if (config.AUTH_MODE === 'required' && !config.JWKS_URL) {
    throw new ConfigError('JWKS_URL is required when AUTH_MODE=required')
  }
}
