// Rendering of the services' output for a terminal: one line per log record, a coloured service prefix,
// pino's JSON made compact (time, level, message, then the remaining fields as key=value).

const COLOURS: Record<string, number> = {
  gateway: 35, // magenta
  'task-service': 36, // cyan
  'user-service': 33, // yellow
  'project-service': 32, // green
  postgres: 34, // blue
  nats: 94, // bright blue
  launcher: 1, // bold
}
const LEVEL_COLOURS: Record<string, number> = {
  trace: 90,
  debug: 90,
  info: 32,
  warn: 33,
  error: 31,
  fatal: 41,
}
const HIDDEN = new Set(['time', 'level', 'msg', 'service', 'pid', 'hostname', 'v'])
const WIDTH = Math.max(...Object.keys(COLOURS).map((name) => name.length))

export function useColour(stream: NodeJS.WriteStream = process.stdout): boolean {
  if (process.env.NO_COLOR) return false
  if (process.env.FORCE_COLOR && process.env.FORCE_COLOR !== '0') return true
  return stream.isTTY === true
}

export const paint = (on: boolean, code: number, text: string) =>
  on ? `\u001b[${code}m${text}\u001b[0m` : text

export function prefix(service: string, colour: boolean): string {
  return paint(colour, COLOURS[service] ?? 37, `${service.padEnd(WIDTH)} │`)
}

function field(key: string, value: unknown): string {
  if (value === null || typeof value !== 'object') {
    const text = String(value)
    return `${key}=${/\s/.test(text) ? JSON.stringify(text) : text}`
  }
  if (key === 'err' || key === 'error') {
    const error = value as { type?: string; message?: string; code?: string }
    return `${key}=${JSON.stringify(`${error.type ?? 'Error'}${error.code ? `(${error.code})` : ''}: ${error.message ?? ''}`)}`
  }
  return `${key}=${JSON.stringify(value)}`
}

/** One output line of a service, compact when it is a pino JSON record, as it came otherwise. */
export function renderLine(line: string, colour: boolean): string {
  if (!line.startsWith('{')) return line
  let record: Record<string, unknown>
  try {
    record = JSON.parse(line)
  } catch {
    return line
  }
  const time = typeof record.time === 'string' ? record.time.slice(11, 23) : ''
  const level = String(record.level ?? 'info')
  const rest = Object.entries(record)
    .filter(([key]) => !HIDDEN.has(key))
    .map(([key, value]) => field(key, value))
    .join(' ')
  const levelText = paint(colour, LEVEL_COLOURS[level] ?? 37, level.toUpperCase().padEnd(5))
  return `${paint(colour, 90, time)} ${levelText} ${String(record.msg ?? '')}${rest ? ` ${paint(colour, 90, rest)}` : ''}`
}
