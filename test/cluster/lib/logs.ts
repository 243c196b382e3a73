import { type ChildProcess, spawn } from 'node:child_process'
import { pods } from './cluster.ts'

export interface LogFollower {
  /** Stops following and returns the warning and error lines seen, each prefixed with its pod. */
  stop(): string[]
}

const MAX_LINES = 200

/** A kit log line at warn or above (pino JSON, level as a label or a number). */
const isWarning = (line: string) => {
  try {
    const { level } = JSON.parse(line) as { level?: unknown }
    return (
      level === 'warn' || level === 'error' || level === 'fatal' || (typeof level === 'number' && level >= 40)
    )
  } catch {
    return false
  }
}

/**
 * Follows the logs of every pod matching `selector`, the ones a rollout starts later included, and keeps their
 * warnings and errors: by the time a rollout test fails its old pods are gone, and with them what they logged.
 */
export function followLogs(namespace: string, selector: string): LogFollower {
  const children = new Map<string, ChildProcess>()
  const lines: string[] = []
  let stopped = false
  const follow = (pod: string) => {
    const child = spawn('kubectl', ['-n', namespace, 'logs', '-f', '--all-containers=true', pod], {
      stdio: ['ignore', 'pipe', 'ignore'],
    })
    let rest = ''
    child.stdout?.on('data', (chunk: Buffer) => {
      const text = rest + chunk.toString()
      const parts = text.split('\n')
      rest = parts.pop() ?? ''
      for (const line of parts) {
        if (lines.length < MAX_LINES && isWarning(line)) lines.push(`${pod} ${line.slice(0, 600)}`)
      }
    })
    // A pod whose container has not started yet refuses `logs -f`: forget it, the next round tries again.
    child.on('close', () => {
      if (children.get(pod) === child && !stopped) children.delete(pod)
    })
    children.set(pod, child)
  }
  const round = async () => {
    while (!stopped) {
      try {
        for (const pod of await pods(namespace, selector)) {
          const name = pod.metadata.name
          if (!children.has(name) && pod.status?.phase === 'Running') follow(name)
        }
      } catch {
        // the API being slow for a moment only delays the next round
      }
      await new Promise((resolve) => setTimeout(resolve, 1000))
    }
  }
  void round()
  return {
    stop() {
      stopped = true
      for (const child of children.values()) child.kill('SIGKILL')
      return lines
    },
  }
}
