import { spawn, type ChildProcess } from 'node:child_process'
import { connect } from 'node:net'
import { STDERR_TAIL_CHARS, STDERR_TAIL_LINES, STOP_GRACE_MS } from './constants.js'

export interface ExitInfo {
  code: number | null
  signal: NodeJS.Signals | null
  /** set when the process could not be started at all (ENOENT, EACCES) */
  error?: NodeJS.ErrnoException
}

/** How a runner's process is spawned and who hears of it. */
export interface SpawnOptions {
  /**
   * Command prefixed to the binary so the child dies with the agent, e.g.
   * `['/usr/bin/setpriv', '--pdeathsig', 'KILL', '--']` (see `parentDeathPrefix`). Unset:
   * plain spawn, and a killed agent leaves the child running (the pid file reaps it).
   */
  parentDeathPrefix?: string[]
  /** called once the process has a pid, and again when it has exited */
  onSpawn?: (proc: RunnerProcess) => void
  onExit?: (proc: RunnerProcess) => void
}

/**
 * One child process of a runner: spawned detached from stdin, its stderr's last lines kept to
 * explain a failure, its exit observable as a promise.
 */
export class RunnerProcess {
  readonly child: ChildProcess
  readonly exited: Promise<ExitInfo>
  /** the runner's binary (not the parent-death prefix): what the pid file records */
  readonly binary: string
  private readonly tail: string[] = []
  /** the stderr line being written (no newline yet), bounded like a line of the tail */
  private partial = ''
  private _exit?: ExitInfo

  constructor (binary: string, args: string[], opts: SpawnOptions = {}) {
    this.binary = binary
    const prefix = opts.parentDeathPrefix ?? []
    // spawned from the main thread (libuv forks in the calling thread): PR_SET_PDEATHSIG
    // follows the thread that forked, which lives as long as the agent
    this.child = prefix.length > 0
      ? spawn(prefix[0]!, [...prefix.slice(1), binary, ...args], { stdio: ['ignore', 'ignore', 'pipe'] })
      : spawn(binary, args, { stdio: ['ignore', 'ignore', 'pipe'] })
    const onData = (buf: Buffer): void => {
      const lines = (this.partial + buf.toString('utf8')).split('\n')
      this.partial = (lines.pop() ?? '').slice(-STDERR_TAIL_CHARS)
      for (const line of lines) this.keep(line)
    }
    this.child.stderr?.on('data', onData)
    this.child.stderr?.once('end', () => {
      this.keep(this.partial)
      this.partial = ''
    })
    this.exited = new Promise((resolve) => {
      this.child.once('error', (error: NodeJS.ErrnoException) => {
        // 'error' without 'exit' when the binary cannot be spawned
        if (this.child.pid == null) {
          this._exit = { code: null, signal: null, error }
          resolve(this._exit)
        }
      })
      // through the prefix, a binary that cannot be executed is the prefix's exit 126/127 and a
      // line on stderr: read to its end ('close'), and reported as the spawn error it stands for
      this.child.once(prefix.length > 0 ? 'close' : 'exit', (code: number | null, signal: NodeJS.Signals | null) => {
        const failed = prefix.length > 0 && (code === 126 || code === 127) ? this.tail.find((l) => l.includes('failed to execute')) : undefined
        this._exit = failed != null
          ? { code, signal, error: Object.assign(new Error(failed), { code: code === 127 ? 'ENOENT' : 'EACCES' }) }
          : { code, signal }
        resolve(this._exit)
      })
    })
    if (this.child.pid != null) {
      opts.onSpawn?.(this)
      void this.exited.then(() => { opts.onExit?.(this) })
    }
  }

  get pid (): number | undefined { return this.child.pid }
  get exit (): ExitInfo | undefined { return this._exit }
  get alive (): boolean { return this._exit == null }

  private keep (line: string): void {
    if (line.trim() === '') return
    this.tail.push(line.slice(-STDERR_TAIL_CHARS))
    if (this.tail.length > STDERR_TAIL_LINES) this.tail.shift()
  }

  /**
   * The last stderr lines (and the one being written), for error messages: at most `lines` lines
   * and the last `maxChars` characters of them.
   */
  stderrTail (lines = 10, maxChars = STDERR_TAIL_CHARS): string {
    const kept = this.partial.trim() !== '' ? [...this.tail, this.partial] : this.tail
    return kept.slice(-lines).join('\n').slice(-maxChars)
  }

  /** "exited with code 1" / "killed by SIGKILL" / "could not be started (ENOENT)". */
  describeExit (): string {
    const e = this._exit
    if (e == null) return 'running'
    if (e.error != null) return `could not be started (${e.error.code ?? e.error.message})`
    return e.signal != null ? `killed by ${e.signal}` : `exited with code ${e.code}`
  }

  /**
   * Ends the process: SIGCONT (a stopped process would hold SIGTERM pending), SIGTERM, then
   * SIGKILL after `graceMs`. Resolves when it has exited.
   */
  async kill (graceMs = STOP_GRACE_MS): Promise<void> {
    if (this._exit != null) return
    try {
      this.child.kill('SIGCONT')
      this.child.kill('SIGTERM')
    } catch {
      // already gone
    }
    const timer = setTimeout(() => { try { this.child.kill('SIGKILL') } catch {} }, graceMs)
    await this.exited
    clearTimeout(timer)
  }
}

/** True when a TCP connection to host:port opens within `timeoutMs`; closes it at once. */
export async function canConnect (host: string, port: number, timeoutMs: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const socket = connect({ host, port })
    const done = (ok: boolean): void => {
      clearTimeout(timer)
      socket.removeAllListeners()
      socket.on('error', () => {})
      socket.destroy()
      resolve(ok)
    }
    const timer = setTimeout(() => { done(false) }, timeoutMs)
    socket.once('connect', () => { done(true) })
    socket.once('error', () => { done(false) })
  })
}
