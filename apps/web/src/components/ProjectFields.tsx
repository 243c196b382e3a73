import { TextAreaField, TextField } from './Field.js'

/** A project's name and description: the new-project form and the rename form ask for them alike. */
export function ProjectFields({
  id,
  errors,
  name,
  onName,
  description,
  onDescription,
  descriptionLabel,
}: {
  id: string
  errors: Record<string, string>
  name: string
  onName(value: string): void
  description: string
  onDescription(value: string): void
  descriptionLabel: string
}) {
  return (
    <>
      <TextField
        id={`${id}-name`}
        label="Project name"
        error={errors.name}
        required
        maxLength={200}
        value={name}
        onValue={onName}
      />
      <TextAreaField
        id={`${id}-description`}
        label={descriptionLabel}
        error={errors.description}
        maxLength={2000}
        rows={2}
        value={description}
        onValue={onDescription}
      />
    </>
  )
}
