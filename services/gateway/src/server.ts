import { main } from '@task-manager/service-kit'
import gatewayApp, { identity } from './app.js'
import { loadGatewayConfig } from './config.js'

await main({ identity, loadConfig: loadGatewayConfig, plugin: gatewayApp })
