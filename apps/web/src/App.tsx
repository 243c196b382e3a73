import { useCallback, useEffect, useMemo, useRef, useState } from 'preact/hooks'
import { Api, ApiError } from './api.js'
import { NoticeBar } from './components/NoticeBar.js'
import { ProjectList } from './components/ProjectList.js'
import { ProjectView } from './components/ProjectView.js'
import { SignIn } from './components/SignIn.js'
import { type Notice, type Session, SessionContext } from './context.js'
import { describe } from './messages.js'
import type { Project, User } from './types.js'

export function App() {
  const api = useMemo(() => new Api(), [])
  const [user, setUser] = useState<User | null>(null)
  const [notice, setNotice] = useState<Notice | null>(null)
  const [project, setProject] = useState<Project | null>(null)
  const names = useRef(new Map<number, Promise<string>>())

  const endSession = useCallback(
    (message: string | null) => {
      api.setToken(null)
      names.current.clear()
      setUser(null)
      setProject(null)
      setNotice(message ? { kind: 'info', text: message } : null)
    },
    [api],
  )

  useEffect(() => {
    api.onUnauthorized = () => endSession('Your session has ended. Please sign in again.')
    return () => {
      api.onUnauthorized = null
    }
  }, [api, endSession])

  const session = useMemo<Session | null>(() => {
    if (!user) return null
    return {
      api,
      user,
      notify: setNotice,
      report(error, action) {
        if (error instanceof ApiError && error.status === 401) return // onUnauthorized signed out
        setNotice({
          kind: 'error',
          text: describe(error, action),
          retryAfter: error instanceof ApiError ? error.retryAfter : null,
        })
      },
      userName(id) {
        let name = names.current.get(id)
        if (!name) {
          name = api.call<{ name: string }>('GET', `/users/${id}`).then(
            (answer) => answer.data.name,
            () => `User ${id}`,
          )
          names.current.set(id, name)
        }
        return name
      },
    }
  }, [api, user])

  async function signOut() {
    // POST /auth/logout revokes the user's tokens (docs/events.md, "Token revocation"); if it fails, the
    // token is only dropped from memory and stays valid until it expires (at most 15 minutes).
    let revoked = false
    try {
      await api.call('POST', '/auth/logout', { timeoutMs: 5000 })
      revoked = true
    } catch {
      revoked = false
    }
    endSession(
      revoked
        ? 'You are signed out.'
        : 'You are signed out on this page. The server could not be reached to revoke the session, so it expires on its own within 15 minutes.',
    )
  }

  return (
    <div class="app">
      <header class="topbar">
        <a class="brand" href="/app/">
          Task Manager
        </a>
        {user && (
          <div class="account">
            <span class="who">
              Signed in as <strong>{user.name}</strong>
            </span>
            <button type="button" class="secondary" onClick={signOut}>
              Sign out
            </button>
          </div>
        )}
      </header>
      <NoticeBar notice={notice} onDismiss={() => setNotice(null)} />
      <main id="main">
        {!session ? (
          <SignIn
            api={api}
            onSignedIn={(signedIn) => {
              setNotice(null)
              setUser(signedIn)
            }}
            onNotice={setNotice}
          />
        ) : (
          <SessionContext.Provider value={session}>
            {project ? (
              <ProjectView
                key={project.id}
                project={project}
                onChanged={setProject}
                onClose={() => setProject(null)}
              />
            ) : (
              <ProjectList onOpen={setProject} />
            )}
          </SessionContext.Provider>
        )}
      </main>
    </div>
  )
}
