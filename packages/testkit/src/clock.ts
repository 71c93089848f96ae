import type { Clock, TimerHandle } from '@llmesh/protocol'

interface Timer { id: number, at: number, fn: () => void }

/**
 * A clock that moves only when told: `advance(ms)` runs every timer due on the way, in time
 * order (ties in the order they were set), with `now()` at each timer's time, and awaits the
 * microtasks each one queues, so promise chains a timer starts settle before the next fires.
 */
export class FakeClock implements Clock {
  private t: number
  private seq = 0
  private readonly timers = new Map<number, Timer>()

  constructor (start = 1_700_000_000_000) {
    this.t = start
  }

  now = (): number => this.t

  setTimeout = (fn: () => void, ms: number): TimerHandle => {
    const id = ++this.seq
    this.timers.set(id, { id, at: this.t + Math.max(0, ms), fn })
    return id
  }

  clearTimeout = (timer: TimerHandle | undefined): void => {
    if (typeof timer === 'number') this.timers.delete(timer)
  }

  /** timers still due */
  get pending (): number {
    return this.timers.size
  }

  /** Moves time forward by `ms`, running what falls due. */
  async advance (ms: number): Promise<void> {
    const end = this.t + ms
    for (;;) {
      let next: Timer | undefined
      for (const timer of this.timers.values()) {
        if (timer.at <= end && (next == null || timer.at < next.at || (timer.at === next.at && timer.id < next.id))) next = timer
      }
      if (next == null) break
      this.timers.delete(next.id)
      this.t = Math.max(this.t, next.at)
      next.fn()
      await settle()
    }
    this.t = end
    await settle()
  }
}

/** Lets queued microtasks (and the promise chains they start) run. */
async function settle (): Promise<void> {
  for (let i = 0; i < 10; i++) await Promise.resolve()
  await new Promise<void>((resolve) => { setImmediate(resolve) })
}
