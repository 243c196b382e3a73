export * from './config.js'
export { type AuthMode, type AuthPluginOptions, authPlugin, bearerToken } from './plugin.js'
export * from './principal.js'
export * from './verifier.js'
