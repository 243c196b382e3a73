import { ConfigError, runService } from '@task-manager/service-kit'
import taskApp, { identity } from './app.js'
import { loadTaskServiceConfig } from './config.js'

try {
  const config = loadTaskServiceConfig()
  await runService({ identity, config, plugin: taskApp, pluginOptions: { config } })
} catch (error) {
  if (error instanceof ConfigError) {
    console.error(`task-service: ${error.message}`)
    process.exit(78)
  }
  throw error
}
