import type { CircuitState } from './cluster-view.js'
import { BREAKER_COOL_DOWN_MS, BREAKER_FAILURE_THRESHOLD, BREAKER_MAX_COOL_DOWN_MS } from './constants.js'

export interface CircuitBreakerInit {
  /** consecutive failures that open the circuit. @default 5 */
  failureThreshold?: number
  /** first open period, ms; doubles per failed probe. @default 5000 ms */
  coolDownMs?: number
  /** @default 60000 ms */
  maxCoolDownMs?: number
}

/**
 * One host's circuit breaker, on an injected clock (methods take `now`, ms):
 *
 *     closed --(failureThreshold consecutive failures)--> open
 *     open --(coolDown elapsed)--> half-open: ONE probe request may go
 *     half-open --probe succeeds--> closed (cool-down back to its first value)
 *     half-open --probe fails--> open, cool-down doubled (up to maxCoolDownMs)
 *
 * Only failures that say the host is unwell count (connect error, 5xx, stall, protocol
 * error); "busy" is a healthy host that is full, and a client abort says nothing: report those
 * with `onNeutral`, which also frees a probe slot they held. A probe that never reports back
 * (a bug in the caller) stops blocking after one cool-down, so a host cannot stay out forever.
 */
export class CircuitBreaker {
  private readonly threshold: number
  private readonly baseCoolDownMs: number
  private readonly maxCoolDownMs: number
  private failures = 0
  private openedAt: number | undefined
  private coolDownMs: number
  private probeAt: number | undefined

  constructor (init: CircuitBreakerInit = {}) {
    this.threshold = Math.max(1, init.failureThreshold ?? BREAKER_FAILURE_THRESHOLD)
    this.baseCoolDownMs = Math.max(0, init.coolDownMs ?? BREAKER_COOL_DOWN_MS)
    this.maxCoolDownMs = Math.max(this.baseCoolDownMs, init.maxCoolDownMs ?? BREAKER_MAX_COOL_DOWN_MS)
    this.coolDownMs = this.baseCoolDownMs
  }

  /** closed, open, or half-open (cool-down over: a probe may go or is out) */
  state (now: number): CircuitState {
    if (this.openedAt == null) return 'closed'
    return now - this.openedAt >= this.coolDownMs ? 'half-open' : 'open'
  }

  /**
   * For routing: may a request be sent now? Same as `state()`, except that a half-open
   * circuit whose probe is out counts as open.
   */
  routable (now: number): CircuitState {
    const s = this.state(now)
    return s === 'half-open' && this.probeOut(now) ? 'open' : s
  }

  /** Asks to send one request now; in half-open, a yes reserves the single probe. */
  allow (now: number): boolean {
    const s = this.state(now)
    if (s === 'closed') return true
    if (s === 'open' || this.probeOut(now)) return false
    this.probeAt = now
    return true
  }

  onSuccess (_now: number): void {
    this.failures = 0
    this.openedAt = undefined
    this.probeAt = undefined
    this.coolDownMs = this.baseCoolDownMs
  }

  onFailure (now: number): void {
    const s = this.state(now)
    if (s === 'half-open') {
      this.coolDownMs = Math.min(this.maxCoolDownMs, Math.max(1, this.coolDownMs * 2))
      this.trip(now)
      return
    }
    if (s === 'open') return
    this.failures++
    if (this.failures >= this.threshold) this.trip(now)
  }

  /** An outcome that says nothing about the host's health (busy, client abort). */
  onNeutral (_now: number): void {
    this.probeAt = undefined
  }

  /** consecutive failures while closed */
  get consecutiveFailures (): number {
    return this.failures
  }

  private probeOut (now: number): boolean {
    return this.probeAt != null && now - this.probeAt < Math.max(this.coolDownMs, 1)
  }

  private trip (now: number): void {
    this.openedAt = now
    this.probeAt = undefined
    this.failures = 0
  }
}

/** One breaker per host, made on first use; closed ones without failures are forgotten. */
export class CircuitBreakers {
  private readonly init: CircuitBreakerInit
  private readonly breakers = new Map<string, CircuitBreaker>()

  constructor (init: CircuitBreakerInit = {}) {
    this.init = init
  }

  get (peerId: string): CircuitBreaker {
    let b = this.breakers.get(peerId)
    if (b == null) {
      b = new CircuitBreaker(this.init)
      this.breakers.set(peerId, b)
    }
    return b
  }

  /** `rank()`'s `circuits`: every host whose circuit is not closed, as routing sees it. */
  states (now: number): Map<string, CircuitState> {
    const out = new Map<string, CircuitState>()
    for (const [peerId, b] of this.breakers) {
      const s = b.routable(now)
      if (s !== 'closed') out.set(peerId, s)
      else if (b.consecutiveFailures === 0) this.breakers.delete(peerId)
    }
    return out
  }

  allow (peerId: string, now: number): boolean {
    return this.breakers.get(peerId)?.allow(now) ?? true
  }
}
