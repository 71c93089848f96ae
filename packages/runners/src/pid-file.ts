import { execFile } from 'node:child_process'
import { access, constants, readFile } from 'node:fs/promises'
import { delimiter, join } from 'node:path'
import type { Logger } from '@llmesh/protocol'
import { REAP_GRACE_MS, REAP_POLL_MS } from './constants.js'

/**
 * Runner processes that must not outlive their agent. Two layers, since neither covers every
 * case alone:
 *
 * - a parent-death signal (`setpriv --pdeathsig KILL`, Linux): the kernel kills the runner the
 *   moment the agent dies, SIGKILL included. Not on macOS or Windows, and not for a runner the
 *   agent dies while forking (between fork and the prctl).
 * - a pid file in the data dir, rewritten on every spawn and exit: the next start of the agent
 *   kills what it lists and still runs. A pid is trusted only together with its start time,
 *   read from /proc, so a pid the system has reused for an unrelated process is never killed.
 *   Linux only (no /proc elsewhere: entries are then left alone).
 */

/** A process named so that a reused pid cannot pass for it: pid and start time. */
export interface ProcessStamp {
  pid: number
  /** the process's start time in clock ticks since boot (/proc/PID/stat field 22) */
  startTime: string
}

/** One runner process as the pid file records it. */
export interface RunnerPidEntry extends ProcessStamp {
  /** the runner's binary, as spawned */
  binary: string
}

/** What the pid file holds: the agent that wrote it and its runner processes. */
export interface PidFileContent {
  /** the agent, while it runs: a second agent on the same data dir must not reap its runners */
  agent?: ProcessStamp
  runners: RunnerPidEntry[]
}

/**
 * The command prefix that gives a child a parent-death signal: `setpriv --pdeathsig KILL --`
 * where util-linux's setpriv is on PATH and knows the option (Linux), else undefined. Resolve
 * once per agent: it looks through PATH and runs `setpriv --help`.
 */
export async function parentDeathPrefix (path = process.env['PATH'] ?? ''): Promise<string[] | undefined> {
  if (process.platform !== 'linux') return undefined
  for (const dir of path.split(delimiter)) {
    if (dir === '') continue
    const candidate = join(dir, 'setpriv')
    try {
      await access(candidate, constants.X_OK)
    } catch {
      continue
    }
    const help = await new Promise<string>((resolve) => {
      execFile(candidate, ['--help'], { timeout: 5000 }, (_err, stdout) => { resolve(String(stdout)) })
    })
    return help.includes('--pdeathsig') ? [candidate, '--pdeathsig', 'KILL', '--'] : undefined
  }
  return undefined
}

/** The start time of a live process (clock ticks since boot), or undefined when it is gone or unknowable. */
export async function processStartTime (pid: number): Promise<string | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined)
  if (stat == null) return undefined
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses, fields follow the last ')'
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  // fields[0] is field 3 (state): field 22 (starttime) is fields[19]
  if (fields[0] === 'Z') return undefined
  return fields[19]
}

/** The command line of a live process, arguments joined by spaces; '' when unreadable. */
async function processCmdline (pid: number): Promise<string> {
  const raw = await readFile(`/proc/${pid}/cmdline`).catch(() => undefined)
  return raw == null ? '' : raw.toString('utf8').split('\0').join(' ')
}

function isStamp (e: unknown): e is ProcessStamp {
  const o = e as Partial<ProcessStamp> | null
  return typeof o === 'object' && o != null && Number.isSafeInteger(o.pid) && (o.pid ?? 0) > 1 &&
    typeof o.startTime === 'string' && /^\d+$/.test(o.startTime)
}

/** Reads a pid file; a missing or malformed one holds nothing (nothing to reap, no agent). */
export async function readPidFile (file: string): Promise<PidFileContent> {
  const text = await readFile(file, 'utf8').catch(() => undefined)
  if (text == null) return { runners: [] }
  let parsed: { agent?: unknown, runners?: unknown }
  try {
    parsed = JSON.parse(text) as { agent?: unknown, runners?: unknown }
  } catch {
    return { runners: [] }
  }
  if (typeof parsed !== 'object' || parsed == null) return { runners: [] }
  const runners = Array.isArray(parsed.runners)
    ? parsed.runners.filter((e): e is RunnerPidEntry => isStamp(e) && typeof (e as RunnerPidEntry).binary === 'string' && (e as RunnerPidEntry).binary !== '')
    : []
  return { ...(isStamp(parsed.agent) ? { agent: { pid: parsed.agent.pid, startTime: parsed.agent.startTime } } : {}), runners }
}

/** The pid file's text. */
export function formatPidFile (content: PidFileContent): string {
  return `${JSON.stringify(content, null, 2)}\n`
}

/** This process's stamp, or undefined where /proc is missing. */
export async function selfStamp (): Promise<ProcessStamp | undefined> {
  const startTime = await processStartTime(process.pid)
  return startTime != null ? { pid: process.pid, startTime } : undefined
}

/** True while the process a stamp names still runs (the same pid with the same start time). */
export async function isRunning (stamp: ProcessStamp): Promise<boolean> {
  return await processStartTime(stamp.pid) === stamp.startTime
}

/**
 * Kills the runners of a previous run of this agent that still live: each entry whose pid is
 * alive with the recorded start time and whose command line names the recorded binary gets
 * SIGTERM, then SIGKILL after REAP_GRACE_MS. Anything else (gone, pid reused, no /proc) is left
 * alone. Resolves with the pids killed, once they are gone.
 */
export async function reapRunners (entries: RunnerPidEntry[], log?: Logger): Promise<number[]> {
  const reaped: number[] = []
  await Promise.all(entries.map(async (e) => {
    if (!(await isRunning(e))) return
    if (!(await processCmdline(e.pid)).includes(e.binary)) return
    log?.warn({ pid: e.pid, binary: e.binary }, 'a runner of a previous run still lives: stopping it')
    try {
      process.kill(e.pid, 'SIGTERM')
    } catch {
      return
    }
    const killAt = Date.now() + REAP_GRACE_MS
    const giveUpAt = killAt + REAP_GRACE_MS
    while (await isRunning(e)) {
      if (Date.now() >= giveUpAt) {
        log?.error({ pid: e.pid, binary: e.binary }, 'a runner of a previous run survived SIGKILL')
        return
      }
      if (Date.now() >= killAt) {
        try { process.kill(e.pid, 'SIGKILL') } catch {}
      }
      await new Promise((resolve) => setTimeout(resolve, REAP_POLL_MS))
    }
    reaped.push(e.pid)
  }))
  return reaped
}
