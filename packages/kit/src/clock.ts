import type { Clock, TimerHandle } from '@llmesh/protocol'

/** The real clock: Date.now and timers that do not keep the process alive. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const timer = setTimeout(fn, ms)
    timer.unref()
    return timer
  },
  clearTimeout: (timer) => { clearTimeout(timer as NodeJS.Timeout | undefined) }
}

/** Timers of one part on its clock, all cancelled by `clear()` (a stopped part leaves none behind). */
export class Timers {
  private readonly handles = new Set<TimerHandle>()
  private cleared = false

  constructor (private readonly clock: Clock) {}

  /** runs `fn` after `ms` */
  after (ms: number, fn: () => void): TimerHandle | undefined {
    if (this.cleared) return undefined
    const handle = this.clock.setTimeout(() => {
      this.handles.delete(handle)
      fn()
    }, ms)
    this.handles.add(handle)
    return handle
  }

  /** runs `fn` every `ms` (`ms` read again for each period when a function) */
  every (ms: number | (() => number), fn: () => void): void {
    const period = typeof ms === 'number' ? () => ms : ms
    const tick = (): void => {
      this.after(period(), tick)
      fn()
    }
    this.after(period(), tick)
  }

  cancel (handle: TimerHandle | undefined): void {
    if (handle == null) return
    this.handles.delete(handle)
    this.clock.clearTimeout(handle)
  }

  /** a signal that aborts after `ms` on this clock, and its release */
  timeout (ms: number): { signal: AbortSignal, release: () => void } {
    const ctl = new AbortController()
    const handle = this.after(ms, () => { ctl.abort(new TimeoutError(ms)) })
    if (handle == null) ctl.abort(new Error('stopped'))
    return { signal: ctl.signal, release: () => { this.cancel(handle) } }
  }

  /** resolves after `ms` (at once when cleared) */
  async sleep (ms: number): Promise<void> {
    await new Promise<void>((resolve) => { if (this.after(ms, resolve) == null) resolve() })
  }

  clear (): void {
    this.cleared = true
    for (const h of this.handles) this.clock.clearTimeout(h)
    this.handles.clear()
  }
}

export class TimeoutError extends Error {
  override readonly name = 'TimeoutError'
  constructor (ms: number) {
    super(`timed out after ${ms} ms`)
  }
}
