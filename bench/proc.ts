// Processes as the benchmarks see them: CPU time from /proc, pinning with taskset. Shared by
// bench/system.ts and bench/events.ts.
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'

export const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim())

/** Whether a command is on PATH. */
export function has(tool: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

/**
 * A process's own CPU ticks (utime + stime) and those of the children it has already waited for
 * (cutime + cstime): a PostgreSQL backend that exits keeps counting in its postmaster.
 */
function procStat(pid: number): { ticks: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return { ticks: Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]) }
}

export function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number)
  } catch {
    return []
  }
}

/** CPU seconds used so far by a process and its descendants (living, or exited and waited for). */
export function cpuSeconds(pid: number): number {
  let ticks = 0
  try {
    ticks = procStat(pid).ticks
  } catch {
    return 0
  }
  for (const child of childrenOf(pid)) ticks += cpuSeconds(child) * CLK_TCK
  return ticks / CLK_TCK
}

/** The postmaster of a PostgreSQL cluster (the first line of its postmaster.pid). */
export function postmasterPid(clusterDir: string): number {
  return Number(readFileSync(join(clusterDir, 'postmaster.pid'), 'utf8').split('\n')[0])
}

/**
 * Pins a running process, every thread of it, and its living descendants to `cpu` (taskset -a -p);
 * processes it forks later inherit the setting. False when taskset is missing.
 */
export function pinRunning(pid: number, cpu: string): boolean {
  if (!has('taskset')) return false
  execFileSync('taskset', ['-a', '-p', '-c', cpu, String(pid)], { stdio: 'ignore' })
  for (const child of childrenOf(pid)) pinRunning(child, cpu)
  return true
}
