import { ConfigError, runService } from '@task-manager/service-kit'
import userApp, { identity } from './app.js'
import { loadUserServiceConfig } from './config.js'

try {
  const config = loadUserServiceConfig()
  await runService({ identity, config, plugin: userApp, pluginOptions: { config } })
} catch (error) {
  if (error instanceof ConfigError) {
    console.error(`user-service: ${error.message}`)
    process.exit(78)
  }
  throw error
}
