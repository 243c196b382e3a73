// Benchmark upstream: an in-memory service answering a small JSON body, plus a JWKS so the gateway can verify
// the benchmark's access token. Prints {"port", "token"} on stdout when listening.
import { createServer } from 'node:http'
import { exportJWK, generateKeyPair, SignJWT } from 'jose'

const { privateKey, publicKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519' })
const jwks = JSON.stringify({
  keys: [{ ...(await exportJWK(publicKey)), kid: 'bench', alg: 'EdDSA', use: 'sig' }],
})
const token = await new SignJWT({ role: 'user' })
  .setProtectedHeader({ alg: 'EdDSA', kid: 'bench' })
  .setSubject('1')
  .setIssuer('task-manager')
  .setAudience('task-manager-api')
  .setIssuedAt()
  .setExpirationTime('2h')
  .sign(privateKey)

const body = JSON.stringify({
  id: 1,
  title: 'Write the benchmark',
  description: '',
  status: 'todo',
  priority: 'medium',
  user_id: 1,
  project_id: 1,
  due_date: null,
  tags: ['bench'],
})
const server = createServer((req, res) => {
  if (req.url === '/.well-known/jwks.json') {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(jwks) })
    res.end(jwks)
    return
  }
  req.resume()
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
  res.end(body)
})
server.keepAliveTimeout = 60_000
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: server.address().port, token })}\n`)
})
