import { spawn, type ChildProcess } from 'node:child_process'
import { connect } from 'node:net'
import { STDERR_TAIL_LINES, STOP_GRACE_MS } from './constants.js'

export interface ExitInfo {
  code: number | null
  signal: NodeJS.Signals | null
  /** set when the process could not be started at all (ENOENT, EACCES) */
  error?: NodeJS.ErrnoException
}

/**
 * One child process of a runner: spawned detached from stdin, its stderr's last lines kept to
 * explain a failure, its exit observable as a promise.
 */
export class RunnerProcess {
  readonly child: ChildProcess
  readonly exited: Promise<ExitInfo>
  private readonly tail: string[] = []
  private _exit?: ExitInfo

  constructor (binary: string, args: string[]) {
    this.child = spawn(binary, args, { stdio: ['ignore', 'ignore', 'pipe'] })
    const onData = (buf: Buffer): void => {
      for (const line of buf.toString('utf8').split('\n')) {
        if (line.trim() === '') continue
        this.tail.push(line)
        if (this.tail.length > STDERR_TAIL_LINES) this.tail.shift()
      }
    }
    this.child.stderr?.on('data', onData)
    this.exited = new Promise((resolve) => {
      this.child.once('error', (error: NodeJS.ErrnoException) => {
        // 'error' without 'exit' when the binary cannot be spawned
        if (this.child.pid == null) {
          this._exit = { code: null, signal: null, error }
          resolve(this._exit)
        }
      })
      this.child.once('exit', (code, signal) => {
        this._exit = { code, signal }
        resolve(this._exit)
      })
    })
  }

  get pid (): number | undefined { return this.child.pid }
  get exit (): ExitInfo | undefined { return this._exit }
  get alive (): boolean { return this._exit == null }

  /** The last stderr lines, for error messages. */
  stderrTail (lines = 10): string {
    return this.tail.slice(-lines).join('\n')
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
