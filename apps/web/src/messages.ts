import { ApiError } from './api.js'

/**
 * The sentence a person reads for a failed call. Each status the API answers gets its own wording; the
 * service's `detail` is kept where it says something useful (which project, which field, which role).
 */
export function describe(error: unknown, action = 'That'): string {
  if (!(error instanceof ApiError)) return `${action} failed: ${String((error as Error)?.message ?? error)}`
  const detail = error.problem.detail
  const wait = error.retryAfter !== null ? ` Try again in ${error.retryAfter} s.` : ' Try again shortly.'
  switch (error.status) {
    case 0:
      return `${action} failed: ${detail}.`
    case 401:
      return 'Your session has ended. Please sign in again.'
    case 403:
      return `You don't have permission to do that${detail ? `: ${detail}` : '.'}`
    case 404:
      return `Not found${detail ? `: ${detail}` : '.'} It may have been deleted, or you are no longer a member.`
    case 409:
      return `${action} was refused: ${detail ?? 'it conflicts with the current state.'}`
    case 412:
      return 'Someone else changed this since you opened it.'
    case 422:
      return `Please correct the highlighted fields${detail ? ` (${detail})` : ''}.`
    case 429:
      return `Too many requests.${wait}`
    case 503:
      return `The service is unavailable right now.${wait}`
    case 504:
      return `The service took too long to answer.${wait}`
    default:
      return `${action} failed (${error.status})${detail ? `: ${detail}` : '.'}`
  }
}
