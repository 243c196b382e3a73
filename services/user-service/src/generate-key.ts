// Prints a new private Ed25519 JWK for JWT_PRIVATE_KEYS: `node dist/generate-key.js [kid]`.
// Rotation: put the new key SECOND in the array (published, not signing yet), wait for the verifiers'
// key caches (5 min), move it FIRST (it signs), and drop the old key once its tokens expired (15 min).
import { generatePrivateJwk } from './keys.js'

const jwk = await generatePrivateJwk(process.argv[2] ?? `key-${new Date().toISOString().slice(0, 10)}`)
console.log(JSON.stringify(jwk))
