import { useEffect, useRef, useState } from 'preact/hooks'
import { type Api, ApiError } from '../api.js'
import type { Notice } from '../context.js'
import { describe } from '../messages.js'
import type { User } from '../types.js'
import { focusFirstInvalid, TextField } from './Field.js'

type Mode = 'sign-in' | 'register'

/** Sign in (POST /auth/token) or register (POST /users, then sign in with the same password). */
export function SignIn({
  api,
  onSignedIn,
  onNotice,
}: {
  api: Api
  onSignedIn(user: User): void
  onNotice(notice: Notice | null): void
}) {
  const [mode, setMode] = useState<Mode>('sign-in')
  const [name, setName] = useState('')
  const [email, setEmail] = useState('')
  const [password, setPassword] = useState('')
  const [errors, setErrors] = useState<Record<string, string>>({})
  const [busy, setBusy] = useState(false)
  const form = useRef<HTMLFormElement>(null)
  const heading = useRef<HTMLHeadingElement>(null)

  useEffect(() => {
    heading.current?.focus()
  }, [mode])

  async function submit(event: Event) {
    event.preventDefault()
    setBusy(true)
    setErrors({})
    try {
      if (mode === 'register') {
        await api.call('POST', '/users', { body: { name, email, password } })
      }
      const token = await api.call<{ access_token: string }>('POST', '/auth/token', {
        body: { email, password },
      })
      api.setToken(token.data.access_token)
      const me = await api.call<User>('GET', '/users/me')
      setPassword('')
      onSignedIn(me.data)
    } catch (error) {
      api.setToken(null)
      if (error instanceof ApiError && error.status === 422) {
        setErrors(error.fieldErrors)
        focusFirstInvalid(form.current)
      }
      if (error instanceof ApiError && error.status === 401) {
        onNotice({ kind: 'error', text: 'Wrong email or password.' })
      } else if (error instanceof ApiError && error.status === 409 && mode === 'register') {
        onNotice({ kind: 'error', text: 'An account with this email already exists. Sign in instead.' })
      } else {
        onNotice({
          kind: 'error',
          text: describe(error, mode === 'register' ? 'Registration' : 'Signing in'),
          retryAfter: error instanceof ApiError ? error.retryAfter : null,
        })
      }
    } finally {
      setBusy(false)
    }
  }

  const registering = mode === 'register'
  return (
    <section class="card narrow" aria-labelledby="auth-heading">
      <h1 id="auth-heading" tabIndex={-1} ref={heading}>
        {registering ? 'Create an account' : 'Sign in'}
      </h1>
      <form ref={form} onSubmit={submit} noValidate>
        {registering && (
          <TextField
            id="auth-name"
            label="Name"
            error={errors.name}
            autocomplete="name"
            required
            maxLength={100}
            value={name}
            onValue={setName}
          />
        )}
        <TextField
          id="auth-email"
          label="Email"
          error={errors.email}
          type="email"
          autocomplete="email"
          required
          value={email}
          onValue={setEmail}
        />
        <TextField
          id="auth-password"
          label="Password"
          error={errors.password}
          hint={registering ? 'At least 12 characters.' : undefined}
          type="password"
          autocomplete={registering ? 'new-password' : 'current-password'}
          required
          value={password}
          onValue={setPassword}
        />
        <div class="actions">
          <button type="submit" disabled={busy}>
            {registering ? 'Create account' : 'Sign in'}
          </button>
        </div>
      </form>
      <p class="switch">
        {registering ? 'Already have an account?' : 'New here?'}{' '}
        <button
          type="button"
          class="link"
          onClick={() => {
            setErrors({})
            onNotice(null)
            setMode(registering ? 'sign-in' : 'register')
          }}
        >
          {registering ? 'Sign in' : 'Create an account'}
        </button>
      </p>
    </section>
  )
}
