import { useEffect, useRef, useState } from 'preact/hooks'
import { ApiError } from '../api.js'
import { useSession } from '../context.js'
import {
  PRIORITIES,
  type Project,
  priorityLabel,
  STATUSES,
  statusLabel,
  type Task,
  type TaskPriority,
  type TaskStatus,
} from '../types.js'
import { SelectField, TextField } from './Field.js'
import type { NamedMember } from './ProjectView.js'

interface Filters {
  status: TaskStatus | ''
  priority: TaskPriority | ''
  tag: string
  q: string
  due_after: string
  due_before: string
  sort: SortValue
}

const NO_FILTERS: Filters = {
  status: '',
  priority: '',
  tag: '',
  q: '',
  due_after: '',
  due_before: '',
  sort: '-created_at',
}
const PAGE_SIZE = 10
const SORTS = [
  { value: '-created_at', label: 'Newest first' },
  { value: 'created_at', label: 'Oldest first' },
  { value: '-updated_at', label: 'Recently changed' },
  { value: 'due_date', label: 'Due soonest' },
  { value: '-priority', label: 'Highest priority' },
] as const
type SortValue = (typeof SORTS)[number]['value']

// The API's due filters are exclusive date-times: `due_before` < the start of the day (UTC), `due_after` >
// its last millisecond, so "after 3 December" leaves out tasks due on the 3rd, as "before" does.
const dayStart = (day: string) => (day ? `${day}T00:00:00.000Z` : undefined)
const dayEnd = (day: string) => (day ? `${day}T23:59:59.999Z` : undefined)

/**
 * The task list with every filter of GET /tasks (status, priority, tag, text, due dates), a sort, and
 * keyset paging: "Next" sends the cursor of the `Link: rel="next"` header, "Previous" goes back to the
 * cursor the previous page was fetched with.
 */
export function TaskList({
  project,
  members,
  revision,
  onEdit,
}: {
  project: Project
  members: NamedMember[]
  revision: number
  onEdit(task: Task): void
}) {
  const { api, report } = useSession()
  const [draft, setDraft] = useState<Filters>(NO_FILTERS)
  const [applied, setApplied] = useState<Filters>(NO_FILTERS)
  // cursors[i] fetched page i (undefined = the first page); the last entry is the page shown.
  const [cursors, setCursors] = useState<(string | undefined)[]>([undefined])
  const [page, setPage] = useState<{ tasks: Task[]; next: string | null } | null>(null)
  const [errors, setErrors] = useState<Record<string, string>>({})
  const results = useRef<HTMLHeadingElement>(null)

  const cursor = cursors[cursors.length - 1]
  useEffect(() => {
    let live = true
    setErrors({})
    api
      .call<Task[]>('GET', '/tasks', {
        query: {
          project_id: project.id,
          status: applied.status || undefined,
          priority: applied.priority || undefined,
          tag: applied.tag.trim() || undefined,
          q: applied.q.trim() || undefined,
          due_after: dayEnd(applied.due_after),
          due_before: dayStart(applied.due_before),
          sort: applied.sort,
          limit: PAGE_SIZE,
          cursor,
        },
      })
      .then(
        (answer) => {
          if (live) setPage({ tasks: answer.data, next: answer.next })
        },
        (error) => {
          if (!live) return
          if (error instanceof ApiError && error.status === 422) setErrors(error.fieldErrors)
          report(error, 'Filtering the tasks')
        },
      )
    return () => {
      live = false
    }
  }, [project.id, applied, cursor, revision])

  const set = <K extends keyof Filters>(key: K, value: Filters[K]) =>
    setDraft((now) => ({ ...now, [key]: value }))
  const apply = (filters: Filters) => {
    setApplied(filters)
    setCursors([undefined])
  }
  const nameOf = (id: number) => members.find((member) => member.user_id === id)?.name ?? `User ${id}`
  const turn = (next: (string | undefined)[]) => {
    setCursors(next)
    results.current?.focus()
  }

  return (
    <section class="card" aria-labelledby="list-heading">
      <h2 id="list-heading">Tasks</h2>
      <form
        class="filters"
        aria-label="Filter tasks"
        onSubmit={(event) => {
          event.preventDefault()
          apply(draft)
        }}
      >
        <TextField
          id="filter-q"
          label="Search"
          error={errors.q}
          type="search"
          value={draft.q}
          onValue={(value) => set('q', value)}
        />
        <SelectField
          id="filter-status"
          label="Status"
          error={errors.status}
          value={draft.status}
          options={STATUSES}
          any="Any"
          onChange={(value) => set('status', value)}
        />
        <SelectField
          id="filter-priority"
          label="Priority"
          error={errors.priority}
          value={draft.priority}
          options={PRIORITIES}
          any="Any"
          onChange={(value) => set('priority', value)}
        />
        <TextField
          id="filter-tag"
          label="Tag"
          error={errors.tag}
          value={draft.tag}
          onValue={(value) => set('tag', value)}
        />
        <TextField
          id="filter-due-after"
          label="Due after"
          error={errors.due_after}
          type="date"
          value={draft.due_after}
          onValue={(value) => set('due_after', value)}
        />
        <TextField
          id="filter-due-before"
          label="Due before"
          error={errors.due_before}
          type="date"
          value={draft.due_before}
          onValue={(value) => set('due_before', value)}
        />
        <SelectField
          id="filter-sort"
          label="Sort"
          value={draft.sort}
          options={SORTS}
          onChange={(value) => set('sort', value || NO_FILTERS.sort)}
        />
        <div class="actions left">
          <button type="submit">Apply filters</button>
          <button
            type="button"
            class="secondary"
            onClick={() => {
              setDraft(NO_FILTERS)
              apply(NO_FILTERS)
            }}
          >
            Clear
          </button>
        </div>
      </form>

      <h3 id="results-heading" tabIndex={-1} ref={results}>
        {page === null
          ? 'Loading…'
          : `Page ${cursors.length}: ${page.tasks.length} task${page.tasks.length === 1 ? '' : 's'}`}
      </h3>
      {page && page.tasks.length > 0 && (
        <div class="table-scroll">
          <table class="tasks" aria-labelledby="results-heading">
            <thead>
              <tr>
                <th scope="col">Title</th>
                <th scope="col">Status</th>
                <th scope="col">Priority</th>
                <th scope="col">Due</th>
                <th scope="col">Assignee</th>
                <th scope="col">Tags</th>
              </tr>
            </thead>
            <tbody>
              {page.tasks.map((task) => (
                <tr key={task.id}>
                  <td>
                    <button type="button" class="link" onClick={() => onEdit(task)}>
                      {task.title}
                    </button>
                  </td>
                  <td>{statusLabel(task.status)}</td>
                  <td>{priorityLabel(task.priority)}</td>
                  <td>{task.due_date?.slice(0, 10) ?? '—'}</td>
                  <td>{nameOf(task.user_id)}</td>
                  <td>{task.tags.join(', ')}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {page && page.tasks.length === 0 && <p>No tasks match these filters.</p>}
      <nav class="pager" aria-label="Pages">
        <button
          type="button"
          class="secondary"
          disabled={cursors.length <= 1}
          onClick={() => turn(cursors.slice(0, -1))}
        >
          Previous page
        </button>
        <button
          type="button"
          class="secondary"
          disabled={!page?.next}
          onClick={() => page?.next && turn([...cursors, page.next])}
        >
          Next page
        </button>
      </nav>
    </section>
  )
}
