import { Role } from '@task-manager/auth'
import { Id, Text } from '@task-manager/service-kit'
import { type Static, Type } from 'typebox'

// Bodies are declared with additionalProperties: false and the kit's validator removes unknown
// properties: `id`, `role`, `created_at`, `password_hash`… sent by a client are ignored, never stored.
const strict = { additionalProperties: false } as const

export const Email = Type.String({
  format: 'email',
  maxLength: 254,
  description: 'Unique, case-insensitively',
})
export const Name = Text({ minLength: 1, maxLength: 100, notBlank: true })
export const Password = Text({
  minLength: 12,
  maxLength: 128,
  description: 'At least 12 characters; only its scrypt hash is stored',
})

export const Registration = Type.Object({ email: Email, name: Name, password: Password }, strict)
export type Registration = Static<typeof Registration>

export const ProfileChanges = Type.Object(
  {
    name: Type.Optional(Name),
    email: Type.Optional(Email),
    password: Type.Optional(Password),
    current_password: Type.Optional(
      Type.String({ minLength: 1, maxLength: 128, description: 'Required to change email or password' }),
    ),
  },
  {
    ...strict,
    // JSON Schema's dependentRequired, written as if/then (what the validator's draft reads too).
    allOf: ['email', 'password'].map((field) => ({
      if: { required: [field] },
      // biome-ignore lint/suspicious/noThenProperty: JSON Schema's if/then, not a thenable
      then: { required: ['current_password'] },
    })),
  },
)
export type ProfileChanges = Static<typeof ProfileChanges>

/** What the account holder (and admins) see. Never the password hash. */
export const User = Type.Object({
  id: Type.Integer(),
  email: Type.String(),
  name: Type.String(),
  role: Role,
  created_at: Type.String({ format: 'date-time' }),
  updated_at: Type.String({ format: 'date-time' }),
})
export type User = Static<typeof User>

/** What any signed-in user sees of another: no email, no role. */
export const PublicProfile = Type.Object({ id: Type.Integer(), name: Type.String() })

/** `GET /users?email=`: find the account registered with one exact email (to invite someone). */
export const UserLookupQuery = Type.Object(
  { email: Type.String({ ...Email, description: 'Exact email, case-insensitively' }) },
  strict,
)

export const UserParams = Type.Object({ id: Id() })

export const RoleChange = Type.Object({ role: Role }, strict)

export const TokenRequest = Type.Object(
  {
    email: Type.Optional(Text({ minLength: 1, maxLength: 254 })),
    /** OAuth 2.0 password grant spelling (form-encoded): username = email. */
    username: Type.Optional(Text({ minLength: 1, maxLength: 254 })),
    password: Type.String({ minLength: 1, maxLength: 128 }),
    grant_type: Type.Optional(Type.Literal('password')),
  },
  // One of the two spellings of the account's email.
  { ...strict, anyOf: [{ required: ['email'] }, { required: ['username'] }] },
)
export type TokenRequest = Static<typeof TokenRequest>

export const TokenResponse = Type.Object({
  access_token: Type.String(),
  token_type: Type.Literal('Bearer'),
  expires_in: Type.Integer({ description: 'Seconds until the token expires' }),
})

export const Jwks = Type.Object({
  keys: Type.Array(
    Type.Object({
      kty: Type.String(),
      crv: Type.String(),
      x: Type.String(),
      kid: Type.String(),
      alg: Type.String(),
      use: Type.String(),
    }),
  ),
})

export { problemResponses as problems } from '@task-manager/service-kit'
