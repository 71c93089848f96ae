import { describe, expect, it } from 'vitest'
import { CircuitBreaker, CircuitBreakers } from './circuit-breaker.js'

describe('CircuitBreaker', () => {
  it('opens after N consecutive failures; a success in between resets the count', () => {
    const b = new CircuitBreaker({ failureThreshold: 3, coolDownMs: 1000 })
    b.onFailure(0); b.onFailure(1); b.onSuccess(2); b.onFailure(3); b.onFailure(4)
    expect(b.state(5)).toBe('closed')
    expect(b.allow(5)).toBe(true)
    b.onFailure(5)
    expect(b.state(5)).toBe('open')
    expect(b.allow(500)).toBe(false)
  })

  it('lets one probe through after the cool-down; its success closes the circuit', () => {
    const b = new CircuitBreaker({ failureThreshold: 1, coolDownMs: 1000 })
    b.onFailure(0)
    expect(b.state(999)).toBe('open')
    expect(b.state(1000)).toBe('half-open')
    expect(b.routable(1000)).toBe('half-open')
    expect(b.allow(1000)).toBe(true)
    expect(b.routable(1001)).toBe('open')
    expect(b.allow(1001)).toBe(false)
    b.onSuccess(1200)
    expect(b.state(1200)).toBe('closed')
    expect(b.allow(1200)).toBe(true)
  })

  it('re-opens on a failed probe with the cool-down doubled, up to the maximum', () => {
    const b = new CircuitBreaker({ failureThreshold: 1, coolDownMs: 1000, maxCoolDownMs: 3000 })
    b.onFailure(0)
    expect(b.allow(1000)).toBe(true)
    b.onFailure(1100)
    expect(b.state(2999)).toBe('open')
    expect(b.state(3100)).toBe('half-open')
    b.allow(3100)
    b.onFailure(3200)
    // 4000 capped at 3000
    expect(b.state(6199)).toBe('open')
    expect(b.state(6200)).toBe('half-open')
    b.allow(6200)
    b.onSuccess(6300)
    // back to the first cool-down
    b.onFailure(7000)
    expect(b.state(8000)).toBe('half-open')
  })

  it('does not count neutral outcomes; they free the probe', () => {
    const b = new CircuitBreaker({ failureThreshold: 1, coolDownMs: 1000 })
    b.onFailure(0)
    b.allow(1000)
    b.onNeutral(1001)
    expect(b.allow(1002)).toBe(true)
  })

  it('does not stay blocked by a probe that never reports', () => {
    const b = new CircuitBreaker({ failureThreshold: 1, coolDownMs: 1000 })
    b.onFailure(0)
    expect(b.allow(1000)).toBe(true)
    expect(b.allow(1999)).toBe(false)
    expect(b.allow(2000)).toBe(true)
  })

  it('ignores failures reported while already open (requests sent before it opened)', () => {
    const b = new CircuitBreaker({ failureThreshold: 1, coolDownMs: 1000 })
    b.onFailure(0)
    b.onFailure(500)
    expect(b.state(1000)).toBe('half-open')
  })
})

describe('CircuitBreakers', () => {
  it('lists the hosts whose circuit is not closed and forgets healthy ones', () => {
    const set = new CircuitBreakers({ failureThreshold: 1, coolDownMs: 1000 })
    set.get('a').onFailure(0)
    set.get('b').onSuccess(0)
    expect(set.states(10)).toEqual(new Map([['a', 'open']]))
    expect(set.allow('b', 10)).toBe(true)
    expect(set.allow('a', 10)).toBe(false)
    expect(set.states(1000)).toEqual(new Map([['a', 'half-open']]))
    expect(set.allow('a', 1000)).toBe(true)
    expect(set.states(1001)).toEqual(new Map([['a', 'open']]))
  })
})
