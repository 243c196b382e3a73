// The shapes the gateway's API answers (services/*/src/**/schemas.ts), as the app uses them.

export type TaskStatus = 'todo' | 'in_progress' | 'done'
export type TaskPriority = 'low' | 'medium' | 'high'
export type Role = 'owner' | 'editor' | 'viewer'

export const STATUSES: readonly { value: TaskStatus; label: string }[] = [
  { value: 'todo', label: 'To do' },
  { value: 'in_progress', label: 'In progress' },
  { value: 'done', label: 'Done' },
]
export const PRIORITIES: readonly { value: TaskPriority; label: string }[] = [
  { value: 'low', label: 'Low' },
  { value: 'medium', label: 'Medium' },
  { value: 'high', label: 'High' },
]
export const ROLES: readonly { value: Role; label: string }[] = [
  { value: 'owner', label: 'Owner' },
  { value: 'editor', label: 'Editor' },
  { value: 'viewer', label: 'Viewer' },
]

export const statusLabel = (status: TaskStatus) => STATUSES.find((s) => s.value === status)?.label ?? status
export const priorityLabel = (priority: TaskPriority) =>
  PRIORITIES.find((p) => p.value === priority)?.label ?? priority

export interface User {
  id: number
  email: string
  name: string
  role: 'user' | 'admin'
}

export interface Project {
  id: number
  name: string
  description: string
  status: 'active' | 'archived'
  role: Role | null
  created_at: string
  updated_at: string
}

export interface Member {
  project_id: number
  user_id: number
  role: Role
}

export interface Task {
  id: number
  title: string
  description: string
  status: TaskStatus
  priority: TaskPriority
  user_id: number
  project_id: number
  due_date: string | null
  tags: string[]
  version: number
  created_at: string
  updated_at: string
}

/** The writable fields of a task: the body of POST /tasks and PUT /tasks/{id}. */
export type TaskInput = Pick<
  Task,
  'title' | 'description' | 'status' | 'priority' | 'user_id' | 'project_id' | 'due_date' | 'tags'
>

/**
 * What the caller's role lets them do in a project. The UI hides what is not allowed; the API decides
 * (docs/projects.md, docs/task-service.md): viewers read; editors also write tasks and rename the
 * project; owners also manage members and delete it.
 */
export function permissions(role: Role | null) {
  const editor = role === 'owner' || role === 'editor'
  return {
    writeTasks: editor,
    renameProject: editor,
    deleteProject: role === 'owner',
    manageMembers: role === 'owner',
  }
}
export type Permissions = ReturnType<typeof permissions>
