// Applies pending migrations and exits: `node dist/migrate.js` (Kubernetes init container / Job).
import { createDatabase, migrateToLatest } from '@task-manager/service-kit'
import { loadProjectServiceConfig } from './config.js'
import { migrations } from './db/migrations/index.js'

const config = loadProjectServiceConfig()
const { db, close } = createDatabase({
  connectionString: config.DATABASE_URL,
  max: 1,
  applicationName: 'project-service-migrate',
})
try {
  await migrateToLatest(db, migrations, (line) => console.log(line))
  console.log('project-service: migrations up to date')
} finally {
  await close()
}
