import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'

/** A minimal service in its own process: answers every request with its name, on 127.0.0.1. */
const SCRIPT = `
const http = require('node:http')
const server = http.createServer((req, res) => {
  req.resume()
  req.on('end', () => {
    const answer = () => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ service: process.env.NAME, pid: process.pid, url: req.url }))
    }
    // '…/slow' answers after 600 ms: a request in flight while the gateway is told to stop.
    if (req.url.endsWith('/slow')) setTimeout(answer, 600)
    else answer()
  })
})
server.listen(Number(process.env.PORT || 0), '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + '\\n')
})
`

export interface UpstreamProcess {
  child: ChildProcess
  port: number
  url: string
  /** SIGKILL: the process dies with its sockets, like a crashed pod. */
  kill(): Promise<void>
}

export async function spawnUpstream(name: string, port = 0): Promise<UpstreamProcess> {
  const child = spawn(process.execPath, ['-e', SCRIPT], {
    env: { ...process.env, NAME: name, PORT: String(port) },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const [line] = (await once(child.stdout as NodeJS.ReadableStream, 'data')) as [Buffer]
  const actual = (JSON.parse(line.toString()) as { port: number }).port
  return {
    child,
    port: actual,
    url: `http://127.0.0.1:${actual}`,
    kill: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return
      const exited = once(child, 'exit')
      child.kill('SIGKILL')
      await exited
    },
  }
}
