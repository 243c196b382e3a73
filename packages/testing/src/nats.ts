import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type NatsServer, startNatsServer } from '@task-manager/local-nats'
import { afterAll, beforeAll } from 'vitest'

export { type NatsServer, natsServerBinary } from '@task-manager/local-nats'

/** A real nats-server with JetStream on a free port of 127.0.0.1, its store in a throw-away directory. */
export async function startTestNats(): Promise<NatsServer & { remove(): Promise<void> }> {
  const storeDir = await mkdtemp(join(tmpdir(), 'task-manager-nats-'))
  const server = await startNatsServer({ storeDir })
  return {
    ...server,
    get child() {
      return server.child
    },
    remove: async () => {
      await server.stop()
      await rm(storeDir, { recursive: true, force: true })
    },
  }
}

/**
 * Gives the calling test file its own nats-server (JetStream, file storage) for its lifetime, so
 * streams and consumers of one file never meet another's. Read `.url` / `.server` inside tests or hooks.
 */
export function useNatsServer(): { readonly url: string; readonly server: NatsServer } {
  let server: (NatsServer & { remove(): Promise<void> }) | undefined
  beforeAll(async () => {
    server = await startTestNats()
  })
  afterAll(async () => {
    await server?.remove()
  })
  return {
    get url() {
      if (!server) throw new Error('useNatsServer(): the server exists only inside tests and hooks')
      return server.url
    },
    get server() {
      if (!server) throw new Error('useNatsServer(): the server exists only inside tests and hooks')
      return server
    },
  }
}
