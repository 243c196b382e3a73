// The floor for a Node proxy: bare node:http in front of undici's dispatch API, no framework, no protections.
// Headers are copied minus hop-by-hop ones and the response is streamed back; nothing else.
import { createServer } from 'node:http'
import { Pool } from 'undici'

const upstream = process.env.UPSTREAM
const pool = new Pool(upstream, { connections: 128, pipelining: 1 })
const HOP = new Set([
  'connection',
  'keep-alive',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'proxy-connection',
])

const server = createServer((req, res) => {
  const headers = {}
  for (const name in req.headers) if (!HOP.has(name)) headers[name] = req.headers[name]
  pool.dispatch(
    {
      path: req.url,
      method: req.method,
      headers,
      body: req.method === 'GET' || req.method === 'HEAD' ? null : req,
    },
    {
      onRequestStart() {},
      onResponseStart(_controller, statusCode, responseHeaders) {
        for (const name in responseHeaders) if (!HOP.has(name)) res.setHeader(name, responseHeaders[name])
        res.statusCode = statusCode
      },
      onResponseData(_controller, chunk) {
        res.write(chunk)
      },
      onResponseEnd() {
        res.end()
      },
      onResponseError(_controller, error) {
        res.statusCode = 502
        res.end(String(error.message))
      },
    },
  )
})
server.keepAliveTimeout = 60_000
server.listen(Number(process.env.PORT), '127.0.0.1', () => process.stdout.write('listening\n'))
