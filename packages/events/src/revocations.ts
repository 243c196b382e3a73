import { STREAMS } from './catalog.js'
import type { EventFollowerOptions } from './follow.js'

/** The longest access-token lifetime (the user-service allows at most 3600 s) plus clock skew. */
export const REVOCATION_REPLAY_MS = 3_660_000

/**
 * What every token verifier (the gateway and each service) follows: `users.user.tokens_revoked` and
 * `users.user.deleted` into its in-memory revocation list (packages/auth's TokenRevocations). Each
 * replica follows on its own; at start it replays the last token lifetime of revocations, so a restarted
 * process refuses what it refused before.
 */
export function tokenRevocationFollow(revocations: {
  revoke(userId: number, validAfter: number): void
}): Omit<EventFollowerOptions, 'bus' | 'log' | 'registry'> {
  return {
    name: 'token-revocations',
    stream: STREAMS.users,
    types: ['users.user.tokens_revoked', 'users.user.deleted'],
    replayMs: REVOCATION_REPLAY_MS,
    onEvent: (event) => {
      const data = event.data as { user_id: number; valid_after: number }
      revocations.revoke(data.user_id, data.valid_after)
    },
  }
}
