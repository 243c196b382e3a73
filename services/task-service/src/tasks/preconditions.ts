import { HttpProblem, problemType, versionsInIfMatch } from '@task-manager/service-kit'

/** Strong ETag of one version of one task. */
export function etagOf(task: { id: number; version: number }): string {
  return `"${task.id}.${task.version}"`
}

/**
 * Reads `If-Match` for task `id`: undefined when absent or `*` (any current version), else the versions
 * it names. A header naming only other resources (or versions no task can have) can never match: 412 at once.
 */
export function expectedVersions(ifMatch: string | undefined, id: number): number[] | undefined {
  if (ifMatch === undefined || ifMatch.trim() === '*') return undefined
  const versions = versionsInIfMatch(ifMatch, id)
  if (versions.length === 0) throw preconditionFailed(id)
  return versions
}

export function preconditionFailed(id: number): HttpProblem {
  return new HttpProblem(
    412,
    `Task ${id} has changed since you read it; fetch it again and reapply your change`,
    {
      type: problemType('precondition-failed'),
    },
  )
}
