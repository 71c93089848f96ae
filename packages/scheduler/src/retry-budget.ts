import { RETRY_BUDGET_MIN_RETRIES, RETRY_BUDGET_RATIO, RETRY_BUDGET_WINDOW_MS } from './constants.js'

export interface RetryBudgetInit {
  /** retries allowed per request seen in the window. @default 0.2 */
  ratio?: number
  /** sliding window, ms. @default 10000 ms */
  windowMs?: number
  /** retries allowed per window however few requests there were. @default 10 */
  minRetries?: number
  /** resolution of the sliding window. @default 10 buckets */
  buckets?: number
}

/**
 * A retry budget (as in Finagle and gRPC's retry throttling): over the last `windowMs`,
 *
 *     retries <= minRetries + ratio x requests
 *
 * so when every host is failing a router adds at most `ratio` extra load (plus a small
 * constant), instead of multiplying it by the number of attempts. The window slides in
 * `buckets` steps; memory is fixed. Injected clock: methods take `now`, ms.
 */
export class RetryBudget {
  private readonly ratio: number
  private readonly minRetries: number
  private readonly width: number
  private readonly n: number
  private readonly epochs: number[]
  private readonly requests: number[]
  private readonly retries: number[]

  constructor (init: RetryBudgetInit = {}) {
    this.ratio = Math.max(0, init.ratio ?? RETRY_BUDGET_RATIO)
    this.minRetries = Math.max(0, init.minRetries ?? RETRY_BUDGET_MIN_RETRIES)
    this.n = Math.max(1, Math.floor(init.buckets ?? 10))
    this.width = Math.max(1, (init.windowMs ?? RETRY_BUDGET_WINDOW_MS) / this.n)
    this.epochs = new Array<number>(this.n).fill(-Infinity)
    this.requests = new Array<number>(this.n).fill(0)
    this.retries = new Array<number>(this.n).fill(0)
  }

  /** Counts a new request (not a retry). */
  recordRequest (now: number): void {
    this.requests[this.bucket(now)]!++
  }

  /** Would a retry be allowed now? Changes nothing. */
  canRetry (now: number): boolean {
    const { requests, retries } = this.totals(now)
    return retries < Math.floor(this.minRetries + this.ratio * requests)
  }

  /** Takes one retry from the budget if there is one. */
  tryRetry (now: number): boolean {
    if (!this.canRetry(now)) return false
    this.retries[this.bucket(now)]!++
    return true
  }

  /** requests and retries counted in the window ending now */
  totals (now: number): { requests: number, retries: number } {
    const epoch = Math.floor(now / this.width)
    let requests = 0
    let retries = 0
    for (let i = 0; i < this.n; i++) {
      if (this.epochs[i]! > epoch - this.n && this.epochs[i]! <= epoch) {
        requests += this.requests[i]!
        retries += this.retries[i]!
      }
    }
    return { requests, retries }
  }

  private bucket (now: number): number {
    const epoch = Math.floor(now / this.width)
    const i = ((epoch % this.n) + this.n) % this.n
    if (this.epochs[i] !== epoch) {
      this.epochs[i] = epoch
      this.requests[i] = 0
      this.retries[i] = 0
    }
    return i
  }
}
