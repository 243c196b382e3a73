export * from './config.js'
export {
  type AuthMode,
  type AuthPluginOptions,
  type AuthRefusal,
  asAuthError,
  authPlugin,
  authRefusal,
  bearerToken,
  bearerTokenOf,
  MALFORMED_AUTHORIZATION,
} from './plugin.js'
export * from './principal.js'
export * from './revocations.js'
export * from './verifier.js'
