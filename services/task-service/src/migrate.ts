// Applies pending migrations and exits: `node dist/migrate.js` (Kubernetes init container / Job).
import { createDatabase, migrateToLatest } from '@task-manager/service-kit'
import { loadTaskServiceConfig } from './config.js'
import { migrations } from './db/migrations/index.js'

const config = loadTaskServiceConfig()
const { db, close } = createDatabase({
  connectionString: config.DATABASE_URL,
  max: 1,
  applicationName: 'task-service-migrate',
})
try {
  await migrateToLatest(db, migrations, (line) => console.log(line))
  console.log('task-service: migrations up to date')
} finally {
  await close()
}
