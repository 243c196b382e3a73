/**
 * Per-user revocation times: a token of user U issued (`iat`) before U's `valid_after` is refused.
 * The user-service sets `valid_after` when a password or role changes, at logout and when a user is
 * deleted, and publishes it as an event; every verifier (gateway, every service) holds this map, fed by
 * those events (see docs/events.md, "Token revocation"). Entries older than the longest token lifetime
 * can refuse nothing more and are dropped, so the map stays as small as the last hour's revocations.
 */
/** What a verifier asks of a revocation list. */
export interface RevocationList {
  isRevoked(userId: number, issuedAt: number): boolean
}

export class TokenRevocations implements RevocationList {
  private readonly validAfter = new Map<number, number>()
  private lastPrune = 0

  /** @param maxTokenLifetimeSeconds the longest lifetime a token can have (entries older are useless) */
  constructor(private readonly maxTokenLifetimeSeconds = 3_660) {}

  /** Tokens of `userId` issued before `validAfter` (epoch seconds) are refused from now on. */
  revoke(userId: number, validAfter: number): void {
    const current = this.validAfter.get(userId)
    if (current === undefined || validAfter > current) this.validAfter.set(userId, validAfter)
    this.prune()
  }

  /** True when a token of `userId` issued at `issuedAt` (epoch seconds; 0 when it has no `iat`) is revoked. */
  isRevoked(userId: number, issuedAt: number): boolean {
    const validAfter = this.validAfter.get(userId)
    return validAfter !== undefined && issuedAt < validAfter
  }

  get size(): number {
    return this.validAfter.size
  }

  private prune(): void {
    const now = Date.now()
    if (now - this.lastPrune < 60_000) return
    this.lastPrune = now
    const horizon = now / 1000 - this.maxTokenLifetimeSeconds
    for (const [userId, validAfter] of this.validAfter)
      if (validAfter < horizon) this.validAfter.delete(userId)
  }
}
