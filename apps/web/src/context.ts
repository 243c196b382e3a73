import { createContext } from 'preact'
import { useContext } from 'preact/hooks'
import type { Api } from './api.js'
import type { User } from './types.js'

export interface Notice {
  kind: 'error' | 'info'
  text: string
  /** Seconds until a retry makes sense (429, 503): the notice counts down. */
  retryAfter?: number | null
}

export interface Session {
  api: Api
  user: User
  /** Shows a failed call's message in the page's alert region (a 401 signs out instead). */
  report(error: unknown, action?: string): void
  notify(notice: Notice | null): void
  /** User names by id, fetched once each (GET /users/{id} answers the public profile). */
  userName(id: number): Promise<string>
}

export const SessionContext = createContext<Session | null>(null)

export function useSession(): Session {
  const session = useContext(SessionContext)
  if (!session) throw new Error('useSession outside a signed-in page')
  return session
}
