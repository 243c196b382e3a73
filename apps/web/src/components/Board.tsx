import { useEffect, useState } from 'preact/hooks'
import { useSession } from '../context.js'
import {
  type Permissions,
  type Project,
  priorityLabel,
  STATUSES,
  statusLabel,
  type Task,
  type TaskStatus,
} from '../types.js'
import type { NamedMember } from './ProjectView.js'

/** At most this many tasks are drawn on the board (the list view pages through any number). */
const BOARD_LIMIT = 1000
const PAGE = 200

/** Every task of a project (GET /tasks?project_id=, keyset pages of 200), newest first. */
async function loadAll(api: ReturnType<typeof useSession>['api'], projectId: number) {
  const tasks: Task[] = []
  let cursor: string | undefined
  do {
    const page = await api.call<Task[]>('GET', '/tasks', {
      query: { project_id: projectId, sort: '-created_at', limit: PAGE, cursor },
    })
    tasks.push(...page.data)
    cursor = page.next ?? undefined
  } while (cursor && tasks.length < BOARD_LIMIT)
  return { tasks, truncated: Boolean(cursor) }
}

/**
 * A column per status. A card moves with its buttons (keyboard and touch) or by dragging it onto another
 * column (mouse); either way it is one PATCH /tasks/{id}/status, and focus follows the card.
 */
export function Board({
  project,
  can,
  members,
  revision,
  onEdit,
}: {
  project: Project
  can: Permissions
  members: NamedMember[]
  revision: number
  onEdit(task: Task): void
}) {
  const { api, report, notify } = useSession()
  const [tasks, setTasks] = useState<Task[] | null>(null)
  const [truncated, setTruncated] = useState(false)
  const [focusId, setFocusId] = useState<number | null>(null)
  const [dropTarget, setDropTarget] = useState<TaskStatus | null>(null)

  useEffect(() => {
    let live = true
    loadAll(api, project.id).then(
      (loaded) => {
        if (!live) return
        setTasks(loaded.tasks)
        setTruncated(loaded.truncated)
      },
      (error) => report(error, 'Loading the board'),
    )
    return () => {
      live = false
    }
  }, [project.id, revision])

  useEffect(() => {
    if (focusId === null) return
    document.querySelector<HTMLElement>(`[data-task="${focusId}"] .card-title`)?.focus()
    setFocusId(null)
  }, [focusId, tasks])

  async function move(task: Task, status: TaskStatus) {
    if (task.status === status) return
    try {
      const answer = await api.call<Task>('PATCH', `/tasks/${task.id}/status`, { body: { status } })
      setTasks((shown) => shown?.map((each) => (each.id === task.id ? answer.data : each)) ?? null)
      setFocusId(task.id)
      notify({ kind: 'info', text: `“${task.title}” moved to ${statusLabel(status)}.` })
    } catch (error) {
      report(error, 'Moving the task')
    }
  }

  if (tasks === null) return <p aria-busy="true">Loading the board…</p>
  const nameOf = (id: number) => members.find((member) => member.user_id === id)?.name ?? `User ${id}`

  return (
    <section aria-label="Board">
      {truncated && (
        <p class="muted">The board shows the newest {BOARD_LIMIT} tasks; the list view has them all.</p>
      )}
      <div class="board">
        {STATUSES.map((column, index) => {
          const inColumn = tasks.filter((task) => task.status === column.value)
          const before = STATUSES[index - 1]
          const after = STATUSES[index + 1]
          return (
            <section
              key={column.value}
              class={dropTarget === column.value ? 'column drop' : 'column'}
              aria-labelledby={`column-${column.value}`}
              onDragOver={(event) => {
                if (!can.writeTasks) return
                event.preventDefault()
                setDropTarget(column.value)
              }}
              onDragLeave={() => setDropTarget(null)}
              onDrop={(event) => {
                event.preventDefault()
                setDropTarget(null)
                const id = Number(event.dataTransfer?.getData('text/plain'))
                const task = tasks.find((each) => each.id === id)
                if (task) void move(task, column.value)
              }}
            >
              <h2 id={`column-${column.value}`}>
                {column.label} <span class="count">{inColumn.length}</span>
              </h2>
              {inColumn.length === 0 && <p class="muted empty-column">No tasks</p>}
              <ul>
                {inColumn.map((task) => (
                  <li
                    key={task.id}
                    class={`task-card priority-${task.priority}`}
                    data-task={task.id}
                    draggable={can.writeTasks}
                    onDragStart={(event) => event.dataTransfer?.setData('text/plain', String(task.id))}
                  >
                    <button
                      type="button"
                      class="card-title"
                      onClick={() => onEdit(task)}
                      aria-label={`${can.writeTasks ? 'Edit' : 'View'} “${task.title}”`}
                    >
                      {task.title}
                    </button>
                    <p class="card-meta">
                      <span class={`badge priority-${task.priority}`}>{priorityLabel(task.priority)}</span>
                      {task.due_date && <span>Due {task.due_date.slice(0, 10)}</span>}
                      <span>{nameOf(task.user_id)}</span>
                    </p>
                    {task.tags.length > 0 && (
                      <ul class="tags" aria-label="Tags">
                        {task.tags.map((tag) => (
                          <li key={tag}>{tag}</li>
                        ))}
                      </ul>
                    )}
                    {can.writeTasks && (
                      <div class="card-moves">
                        {before && (
                          <button
                            type="button"
                            class="secondary small"
                            onClick={() => move(task, before.value)}
                            aria-label={`Move “${task.title}” to ${before.label}`}
                          >
                            ← {before.label}
                          </button>
                        )}
                        {after && (
                          <button
                            type="button"
                            class="secondary small"
                            onClick={() => move(task, after.value)}
                            aria-label={`Move “${task.title}” to ${after.label}`}
                          >
                            {after.label} →
                          </button>
                        )}
                      </div>
                    )}
                  </li>
                ))}
              </ul>
            </section>
          )
        })}
      </div>
    </section>
  )
}
