import type { ComponentChildren } from 'preact'

/** A labelled control with its 422 message tied to it (aria-describedby) and marked invalid. */
export function Field({
  id,
  label,
  error,
  hint,
  children,
}: {
  id: string
  label: string
  error?: string | undefined
  hint?: string
  children: ComponentChildren
}) {
  return (
    <div class={error ? 'field invalid' : 'field'}>
      <label for={id}>{label}</label>
      {children}
      {hint && (
        <small id={`${id}-hint`} class="hint">
          {hint}
        </small>
      )}
      {error && (
        <small id={`${id}-error`} class="field-error">
          {error}
        </small>
      )}
    </div>
  )
}

/** The aria attributes of a control inside a Field. */
export function fieldAria(id: string, error?: string, hint?: boolean) {
  const described = [hint ? `${id}-hint` : '', error ? `${id}-error` : ''].filter(Boolean).join(' ')
  return {
    id,
    'aria-invalid': error ? ('true' as const) : undefined,
    'aria-describedby': described || undefined,
  }
}

/** Moves focus to the first control of a form marked invalid, after the render that marked it. */
export function focusFirstInvalid(form: HTMLFormElement | null) {
  requestAnimationFrame(() => {
    form?.querySelector<HTMLElement>('[aria-invalid="true"]')?.focus()
  })
}

/** A labelled <select> of fixed choices (statuses, priorities, roles, sorts); `any` adds an empty choice. */
export function SelectField<T extends string>({
  id,
  label,
  error,
  value,
  options,
  any,
  onChange,
}: {
  id: string
  label: string
  error?: string | undefined
  value: T | ''
  options: readonly { value: T; label: string }[]
  any?: string
  onChange(value: T | ''): void
}) {
  return (
    <Field id={id} label={label} error={error}>
      <select
        {...fieldAria(id, error)}
        value={value}
        onChange={(e) => onChange(e.currentTarget.value as T | '')}
      >
        {any !== undefined && <option value="">{any}</option>}
        {options.map((option) => (
          <option key={option.value} value={option.value}>
            {option.label}
          </option>
        ))}
      </select>
    </Field>
  )
}

/** A labelled <input> (text, email, password, date, search…) whose value lives in the caller's state. */
export function TextField({
  id,
  label,
  error,
  hint,
  value,
  onValue,
  type = 'text',
  ...input
}: {
  id: string
  label: string
  error?: string | undefined
  hint?: string
  value: string
  onValue(value: string): void
  type?: 'text' | 'email' | 'password' | 'date' | 'search'
  autocomplete?: string
  required?: boolean
  maxLength?: number
  autofocus?: boolean
}) {
  return (
    <Field id={id} label={label} error={error} hint={hint}>
      <input
        {...input}
        // Preact types <input> as a union discriminated by `type`; a `type` that is itself a union can't
        // select one member, so it is typed as one of them here.
        type={type as 'text'}
        {...fieldAria(id, error, Boolean(hint))}
        value={value}
        onInput={(e) => onValue(e.currentTarget.value)}
      />
    </Field>
  )
}

/** A labelled <textarea> whose value lives in the caller's state. */
export function TextAreaField({
  id,
  label,
  error,
  value,
  onValue,
  rows,
  maxLength,
}: {
  id: string
  label: string
  error?: string | undefined
  value: string
  onValue(value: string): void
  rows: number
  maxLength: number
}) {
  return (
    <Field id={id} label={label} error={error}>
      <textarea
        {...fieldAria(id, error)}
        maxLength={maxLength}
        rows={rows}
        value={value}
        onInput={(e) => onValue(e.currentTarget.value)}
      />
    </Field>
  )
}
