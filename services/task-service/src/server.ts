import { main } from '@task-manager/service-kit'
import taskApp, { identity } from './app.js'
import { loadTaskServiceConfig } from './config.js'

await main({ identity, loadConfig: loadTaskServiceConfig, plugin: taskApp })
