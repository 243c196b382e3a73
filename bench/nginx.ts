// The nginx that both proxy benchmarks (bench/system.ts, bench/gateway/run.mjs) put in front of a Node upstream.
// Plain erasable TypeScript, so that run.mjs can import it with Node's own type stripping.
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/**
 * Writes an nginx configuration into a fresh directory: one worker (one core), keep-alive to the upstream, no
 * access log, every temporary path inside that directory. Returns nginx's arguments and the directory (to remove).
 */
export function nginxProxy(upstreamPort: number, listenPort: number): { args: string[]; dir: string } {
  const prefix = mkdtempSync(join(tmpdir(), 'task-manager-bench-nginx-'))
  const config = join(prefix, 'nginx.conf')
  writeFileSync(
    config,
    `worker_processes 1;
daemon off;
pid ${prefix}/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${prefix}/body;
  proxy_temp_path ${prefix}/proxy;
  upstream app { server 127.0.0.1:${upstreamPort}; keepalive 128; }
  server {
    listen 127.0.0.1:${listenPort};
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`,
  )
  return { args: ['-p', prefix, '-c', config, '-e', 'stderr'], dir: prefix }
}
