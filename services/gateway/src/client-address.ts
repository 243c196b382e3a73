import type { IncomingMessage } from 'node:http'
import proxyAddr from '@fastify/proxy-addr'

type Trust = (address: string, hop: number) => boolean

const lastEntry = (value: string) => {
  const comma = value.lastIndexOf(',')
  return comma === -1 ? value.trim() : value.slice(comma + 1).trim()
}

/**
 * Who a request came from and how, with X-Forwarded-* believed only from trusted proxies: the rules Fastify
 * applies for `request.ip`/`ips`/`protocol`/`host` with the kit's TRUST_PROXY setting (same library, same
 * compilation of the setting), for requests the gateway serves before Fastify sees them.
 */
export class ClientAddress {
  private readonly trust: Trust | undefined

  /** `setting` as TRUST_PROXY: `false`, or comma-separated addresses, CIDRs or `loopback`-style names. */
  constructor(setting = 'loopback') {
    this.trust =
      setting === 'false' ? undefined : proxyAddr.compile(setting.split(',').map((value) => value.trim()))
  }

  /** The client's address: the peer, or the first untrusted hop of X-Forwarded-For. */
  ip(req: IncomingMessage): string {
    const peer = req.socket.remoteAddress ?? ''
    if (this.trust === undefined || req.headers['x-forwarded-for'] === undefined) return peer
    const chain = proxyAddr.all(req, this.trust)
    return chain[chain.length - 1] ?? peer
  }

  /** X-Forwarded-For to send on: the trusted part of the chain, client first, ending with our peer. */
  forwardedFor(req: IncomingMessage): string {
    const peer = req.socket.remoteAddress ?? ''
    if (this.trust === undefined || req.headers['x-forwarded-for'] === undefined) return peer
    const chain = proxyAddr.all(req, this.trust)
    return chain.length > 1 ? chain.toReversed().join(', ') : peer
  }

  private trustsPeer(req: IncomingMessage): boolean {
    return this.trust !== undefined && this.trust(req.socket.remoteAddress ?? '', 0)
  }

  protocol(req: IncomingMessage): string {
    const forwarded = req.headers['x-forwarded-proto']
    if (typeof forwarded === 'string' && this.trustsPeer(req)) return lastEntry(forwarded)
    return (req.socket as { encrypted?: boolean }).encrypted ? 'https' : 'http'
  }

  host(req: IncomingMessage): string {
    const forwarded = req.headers['x-forwarded-host']
    if (typeof forwarded === 'string' && this.trustsPeer(req)) return lastEntry(forwarded)
    return req.headers.host ?? ''
  }
}
