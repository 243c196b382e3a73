import type { ComponentChildren } from 'preact'
import { useEffect, useRef } from 'preact/hooks'

/**
 * A modal <dialog>: the browser traps focus inside it and Escape closes it; focus goes back to what had it
 * before it opened (the button that opened it), so keyboard users keep their place.
 */
export function Modal({
  labelId,
  onClose,
  children,
  wide = false,
}: {
  labelId: string
  onClose(): void
  children: ComponentChildren
  wide?: boolean
}) {
  const dialog = useRef<HTMLDialogElement>(null)
  useEffect(() => {
    const opener = document.activeElement instanceof HTMLElement ? document.activeElement : null
    const element = dialog.current
    element?.showModal()
    return () => {
      if (element?.open) element.close()
      // The opener may have been re-rendered away (a card moved, a row deleted): then focus the main area.
      requestAnimationFrame(() => {
        if (opener?.isConnected) opener.focus()
        else document.querySelector<HTMLElement>('main h1, main h2')?.focus()
      })
    }
  }, [])
  return (
    <dialog
      ref={dialog}
      class={wide ? 'modal wide' : 'modal'}
      aria-labelledby={labelId}
      onCancel={(event) => {
        event.preventDefault()
        onClose()
      }}
    >
      {children}
    </dialog>
  )
}

/** "Are you sure?" for what cannot be undone. */
export function ConfirmDialog({
  title,
  message,
  confirmLabel,
  onConfirm,
  onCancel,
}: {
  title: string
  message: string
  confirmLabel: string
  onConfirm(): void
  onCancel(): void
}) {
  return (
    <Modal labelId="confirm-title" onClose={onCancel}>
      <h2 id="confirm-title">{title}</h2>
      <p>{message}</p>
      <div class="actions">
        <button type="button" class="secondary" onClick={onCancel} autofocus>
          Cancel
        </button>
        <button type="button" class="danger" onClick={onConfirm}>
          {confirmLabel}
        </button>
      </div>
    </Modal>
  )
}
