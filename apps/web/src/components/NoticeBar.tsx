import { useEffect, useRef, useState } from 'preact/hooks'
import type { Notice } from '../context.js'

/**
 * The page's one message area: errors in an alert region (read out at once), information in a polite
 * status region. A notice with a Retry-After counts down to when trying again makes sense.
 */
export function NoticeBar({ notice, onDismiss }: { notice: Notice | null; onDismiss(): void }) {
  const [left, setLeft] = useState<number | null>(null)
  const timer = useRef<ReturnType<typeof setInterval> | null>(null)

  useEffect(() => {
    if (timer.current) clearInterval(timer.current)
    const seconds = notice?.retryAfter ?? null
    setLeft(seconds)
    if (seconds === null || seconds <= 0) return
    const until = Date.now() + seconds * 1000
    timer.current = setInterval(() => {
      const remaining = Math.max(0, Math.ceil((until - Date.now()) / 1000))
      setLeft(remaining)
      if (remaining === 0 && timer.current) clearInterval(timer.current)
    }, 1000)
    return () => {
      if (timer.current) clearInterval(timer.current)
    }
  }, [notice])

  return (
    <div class="notices">
      <div role="alert" class={notice?.kind === 'error' ? 'notice error' : 'notice empty'}>
        {notice?.kind === 'error' && <NoticeText notice={notice} left={left} onDismiss={onDismiss} />}
      </div>
      <div role="status" class={notice?.kind === 'info' ? 'notice info' : 'notice empty'}>
        {notice?.kind === 'info' && <NoticeText notice={notice} left={left} onDismiss={onDismiss} />}
      </div>
    </div>
  )
}

function NoticeText({ notice, left, onDismiss }: { notice: Notice; left: number | null; onDismiss(): void }) {
  return (
    <>
      <p>
        {notice.text}
        {left !== null && left > 0 && notice.retryAfter ? (
          <span class="countdown"> ({left} s left)</span>
        ) : null}
      </p>
      <button type="button" class="link" onClick={onDismiss} aria-label="Dismiss message">
        ×
      </button>
    </>
  )
}
