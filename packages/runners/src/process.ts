import { spawn, type ChildProcess } from 'node:child_process'
import { connect } from 'node:net'
import { STDERR_TAIL_CHARS, STDERR_TAIL_LINES, STDOUT_LINE_MAX_CHARS, STOP_GRACE_MS } from './constants.js'

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

/** What a runner's process reads and writes besides stderr. */
export interface ProcessIo {
  /** set (a string) or removed (undefined) on top of the agent's environment */
  env?: Record<string, string | undefined>
  /**
   * Keep a pipe to the process's stdin open for its life, for a child that exits on EOF there:
   * `kill` writes `farewell` (a line) and closes it before signalling. Unset: stdin is /dev/null.
   */
  stdin?: { farewell?: string }
  /** called with each stdout line (a line over STDOUT_LINE_MAX_CHARS is dropped). Unset: stdout is discarded. */
  onStdoutLine?: (line: string) => void
}

/**
 * One child process of a runner: stdin and stdout as `ProcessIo` asks (by default /dev/null and
 * discarded), its stderr's last lines kept to explain a failure, its exit observable as a promise.
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
  private readonly farewell?: string

  constructor (binary: string, args: string[], opts: SpawnOptions = {}, io: ProcessIo = {}) {
    this.binary = binary
    const prefix = opts.parentDeathPrefix ?? []
    this.farewell = io.stdin?.farewell
    let env: NodeJS.ProcessEnv | undefined
    if (io.env != null) {
      env = { ...process.env }
      for (const [k, v] of Object.entries(io.env)) {
        if (v == null) delete env[k]
        else env[k] = v
      }
    }
    const options = {
      stdio: [io.stdin != null ? 'pipe' : 'ignore', io.onStdoutLine != null ? 'pipe' : 'ignore', 'pipe'] as Array<'pipe' | 'ignore'>,
      ...(env != null ? { env } : {})
    }
    // spawned from the main thread (libuv forks in the calling thread): PR_SET_PDEATHSIG
    // follows the thread that forked, which lives as long as the agent
    this.child = prefix.length > 0
      ? spawn(prefix[0]!, [...prefix.slice(1), binary, ...args], options)
      : spawn(binary, args, options)
    // a write to a child that has exited fails with EPIPE: its exit is reported by `exited`
    this.child.stdin?.on('error', () => {})
    const onLine = io.onStdoutLine
    if (onLine != null && this.child.stdout != null) {
      let line = ''
      let tooLong = false
      this.child.stdout.on('data', (buf: Buffer) => {
        const parts = buf.toString('utf8').split('\n')
        for (let i = 0; i < parts.length; i++) {
          if (!tooLong) {
            line += parts[i]
            if (line.length > STDOUT_LINE_MAX_CHARS) { tooLong = true; line = '' }
          }
          if (i === parts.length - 1) break
          if (!tooLong) onLine(line)
          line = ''
          tooLong = false
        }
      })
    }
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
   * Ends the process: the farewell line and the end of its stdin (where it is piped), SIGCONT (a
   * stopped process would hold SIGTERM pending), SIGTERM, then SIGKILL after `graceMs`. Resolves
   * when it has exited.
   */
  async kill (graceMs = STOP_GRACE_MS): Promise<void> {
    if (this._exit != null) return
    const stdin = this.child.stdin
    if (stdin != null && !stdin.writableEnded) {
      if (this.farewell != null) stdin.write(`${this.farewell}\n`)
      stdin.end()
    }
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
