import type { UserRow } from '../db/schema.js'
import type { User } from './schemas.js'

/** A row as the API shows it to its owner: every field but the password hash. */
export function toUser(row: UserRow): User {
  return {
    id: row.id,
    email: row.email,
    name: row.name,
    role: row.role,
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
  }
}

export const toPublicProfile = (row: UserRow) => ({ id: row.id, name: row.name })
