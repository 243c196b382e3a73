import { type Static, Type } from 'typebox'

export const ROLES = ['user', 'admin'] as const
export const Role = Type.Union([Type.Literal('user'), Type.Literal('admin')])
export type Role = (typeof ROLES)[number]

/** Who is calling: the user id from `sub` and the role claim of a verified access token. */
export interface Principal {
  id: number
  role: Role
}

export const PrincipalSchema = Type.Object({ id: Type.Integer({ minimum: 1 }), role: Role })
export type PrincipalSchema = Static<typeof PrincipalSchema>

/**
 * Why a token was refused; `unavailable` means the keys could not be fetched (answer 503, not 401);
 * `revoked` that it was issued before its user's tokens were revoked.
 */
export type AuthFailureReason = 'missing' | 'malformed' | 'expired' | 'invalid' | 'revoked' | 'unavailable'

export class AuthError extends Error {
  readonly reason: AuthFailureReason

  constructor(reason: AuthFailureReason, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'AuthError'
    this.reason = reason
  }
}
