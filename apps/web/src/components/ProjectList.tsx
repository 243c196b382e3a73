import { useEffect, useRef, useState } from 'preact/hooks'
import { ApiError } from '../api.js'
import { useSession } from '../context.js'
import type { Project } from '../types.js'
import { focusFirstInvalid } from './Field.js'
import { ProjectFields } from './ProjectFields.js'

/** The caller's projects (GET /projects, keyset pages) and a form to create one. */
export function ProjectList({ onOpen }: { onOpen(project: Project): void }) {
  const { api, report } = useSession()
  const [projects, setProjects] = useState<Project[] | null>(null)
  const [next, setNext] = useState<string | null>(null)
  const [name, setName] = useState('')
  const [description, setDescription] = useState('')
  const [errors, setErrors] = useState<Record<string, string>>({})
  const [busy, setBusy] = useState(false)
  const form = useRef<HTMLFormElement>(null)
  const heading = useRef<HTMLHeadingElement>(null)

  async function load(cursor?: string) {
    try {
      const page = await api.call<Project[]>('GET', '/projects', { query: { limit: 50, cursor } })
      setProjects((shown) => (cursor ? [...(shown ?? []), ...page.data] : page.data))
      setNext(page.next)
    } catch (error) {
      report(error, 'Loading your projects')
    }
  }

  useEffect(() => {
    heading.current?.focus()
    void load()
  }, [])

  async function create(event: Event) {
    event.preventDefault()
    setBusy(true)
    setErrors({})
    try {
      const created = await api.call<Project>('POST', '/projects', { body: { name, description } })
      setName('')
      setDescription('')
      onOpen(created.data)
    } catch (error) {
      if (error instanceof ApiError && error.status === 422) {
        setErrors(error.fieldErrors)
        focusFirstInvalid(form.current)
      }
      report(error, 'Creating the project')
    } finally {
      setBusy(false)
    }
  }

  return (
    <div class="stack">
      <section class="card" aria-labelledby="projects-heading">
        <div class="title-row spread">
          <h1 id="projects-heading" tabIndex={-1} ref={heading}>
            Your projects
          </h1>
          <button type="button" class="secondary small" onClick={() => load()}>
            Refresh
          </button>
        </div>
        {projects === null ? (
          <p aria-busy="true">Loading…</p>
        ) : projects.length === 0 ? (
          <p>No projects yet. Create one below, or ask a project owner to add you.</p>
        ) : (
          <ul class="project-list">
            {projects.map((project) => (
              <li key={project.id}>
                <button type="button" class="project-link" onClick={() => onOpen(project)}>
                  <span class="project-name">{project.name}</span>
                  <span class={`badge role-${project.role ?? 'none'}`}>{project.role ?? 'no role'}</span>
                </button>
                {project.description && <p class="muted">{project.description}</p>}
              </li>
            ))}
          </ul>
        )}
        {next && (
          <button type="button" class="secondary" onClick={() => load(next)}>
            Show more projects
          </button>
        )}
      </section>
      <section class="card" aria-labelledby="new-project-heading">
        <h2 id="new-project-heading">New project</h2>
        <form ref={form} onSubmit={create} noValidate>
          <ProjectFields
            id="project"
            errors={errors}
            name={name}
            onName={setName}
            description={description}
            onDescription={setDescription}
            descriptionLabel="Description (optional)"
          />
          <div class="actions">
            <button type="submit" disabled={busy}>
              Create project
            </button>
          </div>
        </form>
      </section>
    </div>
  )
}
