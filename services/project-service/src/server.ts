import { main } from '@task-manager/service-kit'
import projectApp, { identity } from './app.js'
import { loadProjectServiceConfig } from './config.js'

await main({ identity, loadConfig: loadProjectServiceConfig, plugin: projectApp })
