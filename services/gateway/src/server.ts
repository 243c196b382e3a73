import { ConfigError, runService } from '@task-manager/service-kit'
import gatewayApp, { identity } from './app.js'
import { loadGatewayConfig } from './config.js'

try {
  const config = loadGatewayConfig()
  await runService({ identity, config, plugin: gatewayApp, pluginOptions: { config } })
} catch (error) {
  if (error instanceof ConfigError) {
    console.error(`gateway: ${error.message}`)
    process.exit(78)
  }
  throw error
}
