// `node dist/migrate.js` (the charts' init container): waits for the database, applies pending migrations, exits.
import { migrateMain } from '@task-manager/service-kit'
import { loadUserServiceConfig } from './config.js'
import { migrations } from './db/migrations/index.js'

await migrateMain({ service: 'user-service', loadConfig: loadUserServiceConfig, migrations })
