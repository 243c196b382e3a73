import { useCallback, useEffect, useRef, useState } from 'preact/hooks'
import { ApiError } from '../api.js'
import { useSession } from '../context.js'
import { type Member, type Project, permissions, type Task } from '../types.js'
import { Board } from './Board.js'
import { focusFirstInvalid } from './Field.js'
import { Members } from './Members.js'
import { ConfirmDialog } from './Modal.js'
import { ProjectFields } from './ProjectFields.js'
import { TaskEditor } from './TaskEditor.js'
import { TaskList } from './TaskList.js'

export interface NamedMember extends Member {
  name: string
}

type Tab = 'board' | 'list' | 'members'
const TABS: { id: Tab; label: string }[] = [
  { id: 'board', label: 'Board' },
  { id: 'list', label: 'List' },
  { id: 'members', label: 'Members' },
]

/** One project: its header (rename, delete, leave), the board, the filtered list and the members. */
export function ProjectView({
  project,
  onChanged,
  onClose,
}: {
  project: Project
  onChanged(project: Project): void
  onClose(): void
}) {
  const { api, user, report, notify, userName } = useSession()
  const can = permissions(project.role)
  const [tab, setTab] = useState<Tab>('board')
  const [members, setMembers] = useState<NamedMember[]>([])
  const [renaming, setRenaming] = useState(false)
  const [confirm, setConfirm] = useState<'delete' | 'leave' | null>(null)
  const [editing, setEditing] = useState<Task | 'new' | null>(null)
  // Bumped after every task change, so the board and the list reload.
  const [revision, setRevision] = useState(0)
  const heading = useRef<HTMLHeadingElement>(null)

  const loadMembers = useCallback(async () => {
    try {
      const answer = await api.call<Member[]>('GET', `/projects/${project.id}/members`)
      const named = await Promise.all(
        answer.data.map(async (member) => ({ ...member, name: await userName(member.user_id) })),
      )
      setMembers(named)
      const mine = named.find((member) => member.user_id === user.id)
      if (mine && mine.role !== project.role) onChanged({ ...project, role: mine.role })
    } catch (error) {
      report(error, 'Loading the members')
      if (error instanceof ApiError && error.status === 404) onClose()
    }
  }, [api, project, user.id])

  useEffect(() => {
    heading.current?.focus()
    void loadMembers()
  }, [])

  async function remove() {
    setConfirm(null)
    try {
      await api.call('DELETE', `/projects/${project.id}`)
      notify({ kind: 'info', text: `Project “${project.name}” was deleted.` })
      onClose()
    } catch (error) {
      report(error, 'Deleting the project')
    }
  }

  async function leave() {
    setConfirm(null)
    try {
      await api.call('DELETE', `/projects/${project.id}/members/${user.id}`)
      notify({ kind: 'info', text: `You left “${project.name}”.` })
      onClose()
    } catch (error) {
      report(error, 'Leaving the project')
    }
  }

  const changed = () => setRevision((value) => value + 1)

  return (
    <div class="stack">
      <section class="card project-header" aria-labelledby="project-heading">
        <button type="button" class="link back" onClick={onClose}>
          ← All projects
        </button>
        {renaming ? (
          <RenameForm
            project={project}
            onDone={(renamed) => {
              setRenaming(false)
              if (renamed) onChanged(renamed)
            }}
          />
        ) : (
          <div class="title-row">
            <h1 id="project-heading" tabIndex={-1} ref={heading}>
              {project.name}
            </h1>
            <span class={`badge role-${project.role ?? 'none'}`}>
              Your role: {project.role ?? 'none (read only)'}
            </span>
          </div>
        )}
        {!renaming && project.description && <p class="muted">{project.description}</p>}
        {!renaming && (
          <div class="actions left">
            {can.writeTasks && (
              <button type="button" onClick={() => setEditing('new')}>
                New task
              </button>
            )}
            {can.renameProject && (
              <button type="button" class="secondary" onClick={() => setRenaming(true)}>
                Rename project
              </button>
            )}
            {can.deleteProject && (
              <button type="button" class="danger" onClick={() => setConfirm('delete')}>
                Delete project
              </button>
            )}
            {project.role && project.role !== 'owner' && (
              <button type="button" class="secondary" onClick={() => setConfirm('leave')}>
                Leave project
              </button>
            )}
          </div>
        )}
        <nav class="tabs" aria-label="Project views">
          {TABS.map((each) => (
            <button
              key={each.id}
              type="button"
              class={tab === each.id ? 'tab current' : 'tab'}
              aria-pressed={tab === each.id}
              onClick={() => setTab(each.id)}
            >
              {each.label}
            </button>
          ))}
          <button
            type="button"
            class="tab refresh"
            onClick={() => {
              changed()
              void loadMembers()
            }}
          >
            Refresh
          </button>
        </nav>
      </section>

      {tab === 'board' && (
        <Board project={project} can={can} members={members} revision={revision} onEdit={setEditing} />
      )}
      {tab === 'list' && (
        <TaskList project={project} members={members} revision={revision} onEdit={setEditing} />
      )}
      {tab === 'members' && <Members project={project} can={can} members={members} onChanged={loadMembers} />}

      {editing && (
        <TaskEditor
          project={project}
          can={can}
          members={members}
          task={editing === 'new' ? null : editing}
          onClose={(didChange) => {
            setEditing(null)
            if (didChange) changed()
          }}
        />
      )}
      {confirm === 'delete' && (
        <ConfirmDialog
          title={`Delete “${project.name}”?`}
          message="The project and its member list are deleted for everyone. This cannot be undone."
          confirmLabel="Delete project"
          onConfirm={remove}
          onCancel={() => setConfirm(null)}
        />
      )}
      {confirm === 'leave' && (
        <ConfirmDialog
          title={`Leave “${project.name}”?`}
          message="You will no longer see this project or its tasks until an owner adds you again."
          confirmLabel="Leave project"
          onConfirm={leave}
          onCancel={() => setConfirm(null)}
        />
      )}
    </div>
  )
}

function RenameForm({ project, onDone }: { project: Project; onDone(renamed: Project | null): void }) {
  const { api, report } = useSession()
  const [name, setName] = useState(project.name)
  const [description, setDescription] = useState(project.description)
  const [errors, setErrors] = useState<Record<string, string>>({})
  const form = useRef<HTMLFormElement>(null)

  useEffect(() => {
    form.current?.querySelector('input')?.focus()
  }, [])

  async function save(event: Event) {
    event.preventDefault()
    setErrors({})
    try {
      const answer = await api.call<Project>('PATCH', `/projects/${project.id}`, {
        body: { name, description },
      })
      onDone(answer.data)
    } catch (error) {
      if (error instanceof ApiError && error.status === 422) {
        setErrors(error.fieldErrors)
        focusFirstInvalid(form.current)
      }
      report(error, 'Renaming the project')
    }
  }

  return (
    <form ref={form} onSubmit={save} noValidate aria-label="Rename project">
      <ProjectFields
        id="rename"
        errors={errors}
        name={name}
        onName={setName}
        description={description}
        onDescription={setDescription}
        descriptionLabel="Description"
      />
      <div class="actions left">
        <button type="submit">Save name</button>
        <button type="button" class="secondary" onClick={() => onDone(null)}>
          Cancel
        </button>
      </div>
    </form>
  )
}
