import { ConfigError, runService } from '@task-manager/service-kit'
import projectApp, { identity } from './app.js'
import { loadProjectServiceConfig } from './config.js'

try {
  const config = loadProjectServiceConfig()
  await runService({ identity, config, plugin: projectApp, pluginOptions: { config } })
} catch (error) {
  if (error instanceof ConfigError) {
    console.error(`project-service: ${error.message}`)
    process.exit(78)
  }
  throw error
}
