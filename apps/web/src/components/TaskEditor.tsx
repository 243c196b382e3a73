import { useEffect, useRef, useState } from 'preact/hooks'
import { ApiError } from '../api.js'
import { useSession } from '../context.js'
import {
  type Permissions,
  PRIORITIES,
  type Project,
  priorityLabel,
  STATUSES,
  statusLabel,
  type Task,
  type TaskInput,
} from '../types.js'
import { Field, fieldAria, focusFirstInvalid, SelectField, TextAreaField, TextField } from './Field.js'
import { ConfirmDialog, Modal } from './Modal.js'
import type { NamedMember } from './ProjectView.js'

interface Form {
  title: string
  description: string
  status: TaskInput['status']
  priority: TaskInput['priority']
  user_id: number
  due: string
  tags: string
}

const formOf = (task: Task): Form => ({
  title: task.title,
  description: task.description,
  status: task.status,
  priority: task.priority,
  user_id: task.user_id,
  due: task.due_date?.slice(0, 10) ?? '',
  tags: task.tags.join(', '),
})

/** The body of POST/PUT: every writable field. An unchanged date keeps the task's exact due time. */
function inputOf(form: Form, project: Project, original: Task | null): TaskInput {
  const keepsDue = original?.due_date && original.due_date.slice(0, 10) === form.due
  return {
    title: form.title,
    description: form.description,
    status: form.status,
    priority: form.priority,
    user_id: form.user_id,
    project_id: project.id,
    due_date: form.due ? (keepsDue ? (original?.due_date ?? null) : form.due) : null,
    tags: form.tags
      .split(',')
      .map((tag) => tag.trim())
      .filter(Boolean),
  }
}

const FIELD_LABELS: [keyof Form, string][] = [
  ['title', 'Title'],
  ['description', 'Description'],
  ['status', 'Status'],
  ['priority', 'Priority'],
  ['user_id', 'Assignee'],
  ['due', 'Due date'],
  ['tags', 'Tags'],
]

/**
 * Create or edit a task with every field. Saving sends `If-Match` with the ETag the editor loaded; a 412
 * means someone else saved first: the editor shows their version next to yours and lets you choose.
 */
export function TaskEditor({
  project,
  can,
  members,
  task,
  onClose,
}: {
  project: Project
  can: Permissions
  members: NamedMember[]
  task: Task | null
  onClose(changed: boolean): void
}) {
  const { api, user, report } = useSession()
  const [original, setOriginal] = useState<Task | null>(task)
  const [etag, setEtag] = useState<string | null>(null)
  const [form, setForm] = useState<Form>(
    task
      ? formOf(task)
      : {
          title: '',
          description: '',
          status: 'todo',
          priority: 'medium',
          user_id: user.id,
          due: '',
          tags: '',
        },
  )
  const [errors, setErrors] = useState<Record<string, string>>({})
  const [conflict, setConflict] = useState<{ theirs: Task; etag: string | null } | null>(null)
  const [confirmDelete, setConfirmDelete] = useState(false)
  const [busy, setBusy] = useState(false)
  const formRef = useRef<HTMLFormElement>(null)
  const conflictRef = useRef<HTMLDivElement>(null)
  const readOnly = !can.writeTasks

  // The ETag (and the freshest copy) of the task being edited.
  useEffect(() => {
    if (!task) return
    api.call<Task>('GET', `/tasks/${task.id}`).then(
      (answer) => {
        setOriginal(answer.data)
        setEtag(answer.etag)
        if (answer.data.version !== task.version) setForm(formOf(answer.data))
      },
      (error) => {
        report(error, 'Loading the task')
        if (error instanceof ApiError && error.status === 404) onClose(true)
      },
    )
  }, [])

  useEffect(() => {
    if (conflict) conflictRef.current?.focus()
  }, [conflict])

  const set = <K extends keyof Form>(key: K, value: Form[K]) => setForm((now) => ({ ...now, [key]: value }))

  async function save(event: Event | null, overwrite?: { etag: string | null; theirs: Task }) {
    event?.preventDefault()
    setBusy(true)
    setErrors({})
    try {
      const body = inputOf(form, project, overwrite?.theirs ?? original)
      if (original) {
        const ifMatch = (overwrite ? overwrite.etag : etag) ?? undefined
        await api.call<Task>('PUT', `/tasks/${original.id}`, { body, ifMatch })
      } else {
        await api.call<Task>('POST', '/tasks', { body })
      }
      onClose(true)
    } catch (error) {
      if (error instanceof ApiError && error.status === 412 && original) {
        await showConflict(original.id)
      } else {
        if (error instanceof ApiError && error.status === 422) {
          const fields = error.fieldErrors
          if (fields.due_date) fields.due = fields.due_date
          setErrors(fields)
          focusFirstInvalid(formRef.current)
        }
        report(error, 'Saving the task')
      }
    } finally {
      setBusy(false)
    }
  }

  async function showConflict(id: number) {
    try {
      const latest = await api.call<Task>('GET', `/tasks/${id}`)
      setConflict({ theirs: latest.data, etag: latest.etag })
    } catch (error) {
      report(error, 'Loading the newer version')
    }
  }

  async function remove() {
    if (!original) return
    setConfirmDelete(false)
    try {
      await api.call('DELETE', `/tasks/${original.id}`, { ifMatch: etag ?? undefined })
      onClose(true)
    } catch (error) {
      if (error instanceof ApiError && error.status === 412) await showConflict(original.id)
      else report(error, 'Deleting the task')
    }
  }

  const nameOf = (id: number) => members.find((member) => member.user_id === id)?.name ?? `User ${id}`
  const shown = (key: keyof Form, value: Form[keyof Form]) =>
    key === 'user_id'
      ? nameOf(value as number)
      : key === 'status'
        ? statusLabel(value as Task['status'])
        : key === 'priority'
          ? priorityLabel(value as Task['priority'])
          : String(value) || '—'

  const heading = readOnly ? 'Task' : original ? 'Edit task' : 'New task'
  return (
    <Modal labelId="task-editor-title" onClose={() => onClose(false)} wide>
      <h2 id="task-editor-title">
        {heading}
        {original && (
          <span class="muted">
            {' '}
            #{original.id} · version {original.version}
          </span>
        )}
      </h2>
      {conflict && (
        <div class="conflict" role="alert" tabIndex={-1} ref={conflictRef} aria-labelledby="conflict-title">
          <h3 id="conflict-title">Someone else changed this task (now version {conflict.theirs.version})</h3>
          <p>Your changes were not saved. Compare, then choose which version to keep.</p>
          <table>
            <thead>
              <tr>
                <th scope="col">Field</th>
                <th scope="col">Yours</th>
                <th scope="col">Theirs</th>
              </tr>
            </thead>
            <tbody>
              {FIELD_LABELS.map(([key, label]) => {
                const theirs = formOf(conflict.theirs)[key]
                const differs = theirs !== form[key]
                return (
                  <tr key={key} class={differs ? 'differs' : undefined}>
                    <th scope="row">{label}</th>
                    <td>{shown(key, form[key])}</td>
                    <td>{shown(key, theirs)}</td>
                  </tr>
                )
              })}
            </tbody>
          </table>
          <div class="actions left">
            <button
              type="button"
              disabled={busy}
              onClick={() => {
                const chosen = conflict
                setConflict(null)
                setOriginal(chosen.theirs)
                setEtag(chosen.etag)
                void save(null, chosen)
              }}
            >
              Keep mine (overwrite)
            </button>
            <button
              type="button"
              class="secondary"
              onClick={() => {
                setForm(formOf(conflict.theirs))
                setOriginal(conflict.theirs)
                setEtag(conflict.etag)
                setConflict(null)
              }}
            >
              Use theirs
            </button>
          </div>
        </div>
      )}
      <form ref={formRef} onSubmit={(event) => save(event)} noValidate>
        <fieldset disabled={readOnly || busy} class="plain">
          <TextField
            id="task-title"
            label="Title"
            error={errors.title}
            required
            maxLength={200}
            autofocus
            value={form.title}
            onValue={(value) => set('title', value)}
          />
          <TextAreaField
            id="task-description"
            label="Description"
            error={errors.description}
            maxLength={2000}
            rows={4}
            value={form.description}
            onValue={(value) => set('description', value)}
          />
          <div class="row">
            <SelectField
              id="task-status"
              label="Status"
              error={errors.status}
              value={form.status}
              options={STATUSES}
              onChange={(value) => value && set('status', value)}
            />
            <SelectField
              id="task-priority"
              label="Priority"
              error={errors.priority}
              value={form.priority}
              options={PRIORITIES}
              onChange={(value) => value && set('priority', value)}
            />
          </div>
          <div class="row">
            <Field id="task-assignee" label="Assignee" error={errors.user_id}>
              <select
                {...fieldAria('task-assignee', errors.user_id)}
                value={String(form.user_id)}
                onChange={(e) => set('user_id', Number(e.currentTarget.value))}
              >
                {!members.some((member) => member.user_id === form.user_id) && (
                  <option value={String(form.user_id)}>{nameOf(form.user_id)}</option>
                )}
                {members.map((member) => (
                  <option key={member.user_id} value={String(member.user_id)}>
                    {member.name}
                  </option>
                ))}
              </select>
            </Field>
            <TextField
              id="task-due"
              label="Due date"
              error={errors.due}
              type="date"
              value={form.due}
              onValue={(value) => set('due', value)}
            />
          </div>
          <TextField
            id="task-tags"
            label="Tags"
            error={errors.tags}
            hint="Separate tags with commas."
            value={form.tags}
            onValue={(value) => set('tags', value)}
          />
        </fieldset>
        <div class="actions">
          {original && can.writeTasks && (
            <button type="button" class="danger push-left" onClick={() => setConfirmDelete(true)}>
              Delete task
            </button>
          )}
          <button type="button" class="secondary" onClick={() => onClose(false)}>
            {readOnly ? 'Close' : 'Cancel'}
          </button>
          {!readOnly && (
            <button type="submit" disabled={busy || conflict !== null}>
              {original ? 'Save changes' : 'Create task'}
            </button>
          )}
        </div>
      </form>
      {confirmDelete && original && (
        <ConfirmDialog
          title={`Delete “${original.title}”?`}
          message="The task is deleted for every member of the project. This cannot be undone."
          confirmLabel="Delete task"
          onConfirm={remove}
          onCancel={() => setConfirmDelete(false)}
        />
      )}
    </Modal>
  )
}
