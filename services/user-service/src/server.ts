import { main } from '@task-manager/service-kit'
import userApp, { identity } from './app.js'
import { loadUserServiceConfig } from './config.js'

await main({ identity, loadConfig: loadUserServiceConfig, plugin: userApp })
