import { useRef, useState } from 'preact/hooks'
import { ApiError } from '../api.js'
import { useSession } from '../context.js'
import { type Permissions, type Project, ROLES, type Role } from '../types.js'
import { focusFirstInvalid, SelectField, TextField } from './Field.js'
import { ConfirmDialog } from './Modal.js'
import type { NamedMember } from './ProjectView.js'

/**
 * The members of a project and their roles. Owners invite (POST /projects/{id}/members), change roles
 * (PATCH …/members/{userId}) and remove (DELETE); everyone else sees the list only.
 */
export function Members({
  project,
  can,
  members,
  onChanged,
}: {
  project: Project
  can: Permissions
  members: NamedMember[]
  onChanged(): Promise<void>
}) {
  const { api, user, report, notify } = useSession()
  const [invitee, setInvitee] = useState('')
  const [role, setRole] = useState<Role>('editor')
  const [errors, setErrors] = useState<Record<string, string>>({})
  const [removing, setRemoving] = useState<NamedMember | null>(null)
  const form = useRef<HTMLFormElement>(null)

  async function invite(event: Event) {
    event.preventDefault()
    setErrors({})
    const value = invitee.trim()
    let userId: number
    if (/^\d+$/.test(value)) userId = Number(value)
    else if (value.includes('@')) {
      try {
        const found = await api.call<{ id: number }[]>('GET', '/users', { query: { email: value } })
        const first = found.data[0]
        if (!first) {
          setErrors({ user_id: `Nobody has registered with ${value}.` })
          focusFirstInvalid(form.current)
          return
        }
        userId = first.id
      } catch (error) {
        report(error, 'Looking up the email')
        return
      }
    } else {
      setErrors({ user_id: 'Enter an email address or a user id.' })
      focusFirstInvalid(form.current)
      return
    }
    try {
      await api.call('POST', `/projects/${project.id}/members`, { body: { user_id: userId, role } })
      setInvitee('')
      await onChanged()
      notify({ kind: 'info', text: `Added ${value} as ${role}.` })
    } catch (error) {
      if (error instanceof ApiError && error.status === 422) {
        setErrors({ user_id: error.problem.detail ?? 'Not a user.', ...error.fieldErrors })
        focusFirstInvalid(form.current)
      }
      report(error, 'Adding the member')
    }
  }

  async function changeRole(member: NamedMember, next: Role) {
    try {
      await api.call('PATCH', `/projects/${project.id}/members/${member.user_id}`, { body: { role: next } })
      await onChanged()
      notify({ kind: 'info', text: `${member.name} is now ${next}.` })
    } catch (error) {
      report(error, 'Changing the role')
      await onChanged()
    }
  }

  async function remove(member: NamedMember) {
    setRemoving(null)
    try {
      await api.call('DELETE', `/projects/${project.id}/members/${member.user_id}`)
      await onChanged()
      notify({ kind: 'info', text: `${member.name} was removed from the project.` })
    } catch (error) {
      report(error, 'Removing the member')
    }
  }

  return (
    <section class="card" aria-labelledby="members-heading">
      <h2 id="members-heading">Members</h2>
      <table class="members">
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Role</th>
            {can.manageMembers && <th scope="col">Actions</th>}
          </tr>
        </thead>
        <tbody>
          {members.map((member) => (
            <tr key={member.user_id}>
              <td>
                {member.name}
                {member.user_id === user.id && ' (you)'}
              </td>
              <td>
                {can.manageMembers ? (
                  <select
                    class="role-select"
                    aria-label={`Role of ${member.name}`}
                    value={member.role}
                    onChange={(e) => changeRole(member, e.currentTarget.value as Role)}
                  >
                    {ROLES.map((each) => (
                      <option key={each.value} value={each.value}>
                        {each.label}
                      </option>
                    ))}
                  </select>
                ) : (
                  <span class={`badge role-${member.role}`}>{member.role}</span>
                )}
              </td>
              {can.manageMembers && (
                <td>
                  <button
                    type="button"
                    class="danger small"
                    onClick={() => setRemoving(member)}
                    aria-label={`Remove ${member.name}`}
                  >
                    Remove
                  </button>
                </td>
              )}
            </tr>
          ))}
        </tbody>
      </table>
      {can.manageMembers && (
        <form ref={form} onSubmit={invite} noValidate class="invite" aria-labelledby="invite-heading">
          <h3 id="invite-heading">Invite someone</h3>
          <div class="row">
            <TextField
              id="invite-user"
              label="Email or user id"
              error={errors.user_id}
              hint="They need an account first."
              autocomplete="off"
              required
              value={invitee}
              onValue={setInvitee}
            />
            <SelectField
              id="invite-role"
              label="Role"
              error={errors.role}
              value={role}
              options={ROLES}
              onChange={(value) => value && setRole(value)}
            />
          </div>
          <div class="actions left">
            <button type="submit">Invite</button>
          </div>
        </form>
      )}
      {removing && (
        <ConfirmDialog
          title={`Remove ${removing.name}?`}
          message={`${removing.name} will no longer see “${project.name}” or its tasks.`}
          confirmLabel="Remove member"
          onConfirm={() => remove(removing)}
          onCancel={() => setRemoving(null)}
        />
      )}
    </section>
  )
}
