import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import type { Heartbeat, NodeRecord, RunnerInfo } from '@llmesh/protocol'
import { HeartbeatRate, clampHeartbeat, recordSlots } from './heartbeat-bounds.js'
import {
  MAX_ANNOUNCED_INTERVAL_MS, MAX_HEARTBEATS_IN_PER_SEC, MAX_REPORTED_QUEUE_PER_RUNNER, MAX_REPORTED_TOKENS_PER_SEC, MIN_ANNOUNCED_INTERVAL_MS,
  MIN_REPORTED_LATENCY_MS
} from './constants.js'

function runner (slots: number, state: RunnerInfo['state'] = 'ready'): RunnerInfo {
  return { id: `r${slots}${state}`, kind: 'llama-server', model: 'm', state, slots }
}

function record (peerId: string, runners: RunnerInfo[]): NodeRecord {
  return {
    peerId, name: 'n', version: 't', protocol: 1, addrs: [], api: '127.0.0.1:1', hardware: { cpus: 1, memBytes: 1, platform: 'linux', arch: 'x64' },
    models: [], runners, startedAt: 1, updatedAt: 1
  }
}

function heartbeat (metrics: Partial<Heartbeat['metrics']>, intervalMs?: number): Heartbeat {
  return {
    v: 1, incarnation: 1, seq: 1, status: 'alive', ...(intervalMs != null ? { intervalMs } : {}),
    metrics: { slotsBusy: 0, slotsTotal: 0, queueDepth: 0, tokensPerSec: 0, latencyMs: 0, successRate: 1, claims: {}, ...metrics }
  }
}

const records = new Map<string, NodeRecord>([
  ['liar', record('liar', [runner(2), runner(2), runner(8, 'failed')])],
  ['honest', record('honest', [runner(4)])]
])
const lookup = { get: (id: string) => records.get(id) }

describe('clampHeartbeat', () => {
  it('leaves an honest heartbeat as it is', () => {
    const hb = heartbeat({ slotsBusy: 1, slotsTotal: 4, queueDepth: 3, tokensPerSec: 80, latencyMs: 120, claims: { liar: 2 } }, 500)
    const r = clampHeartbeat(hb, 'honest', lookup)
    expect(r.reasons).toEqual([])
    expect(r.heartbeat).toEqual(hb)
  })

  it('holds slots to the ready runners of the sender record, busy to slots, speed to the ceiling', () => {
    const r = clampHeartbeat(heartbeat({ slotsBusy: 900, slotsTotal: 1000, queueDepth: 1e6, tokensPerSec: 1e6, latencyMs: 0.001 }), 'liar', lookup)
    expect(recordSlots(records.get('liar'))).toBe(4)
    expect(r.heartbeat.metrics).toMatchObject({
      slotsTotal: 4, slotsBusy: 4, queueDepth: 2 * MAX_REPORTED_QUEUE_PER_RUNNER, tokensPerSec: MAX_REPORTED_TOKENS_PER_SEC, latencyMs: MIN_REPORTED_LATENCY_MS
    })
    expect(r.reasons.sort()).toEqual(['busy-over-slots', 'latency-under-floor', 'queue-over-bound', 'slots-over-record', 'tokens-per-sec-over-ceiling'])
  })

  it('gives a sender without a record no slots', () => {
    const r = clampHeartbeat(heartbeat({ slotsTotal: 3, slotsBusy: 1 }), 'stranger', lookup)
    expect(r.heartbeat.metrics.slotsTotal).toBe(0)
    expect(r.heartbeat.metrics.slotsBusy).toBe(0)
  })

  it('holds claims on a host to its slots + queue and drops claims on hosts without a record', () => {
    const r = clampHeartbeat(heartbeat({ claims: { honest: 1e9, ghost: 5, liar: 3 } }), 'liar', lookup)
    expect(r.heartbeat.metrics.claims).toEqual({ honest: 4 + MAX_REPORTED_QUEUE_PER_RUNNER, liar: 3 })
    expect(r.reasons.sort()).toEqual(['claim-over-capacity', 'claim-unknown-host'])
  })

  it('bounds the announced heartbeat period both ways', () => {
    expect(clampHeartbeat(heartbeat({}, 60_000), 'honest', lookup).heartbeat.intervalMs).toBe(MAX_ANNOUNCED_INTERVAL_MS)
    expect(clampHeartbeat(heartbeat({}, 1), 'honest', lookup).heartbeat.intervalMs).toBe(MIN_ANNOUNCED_INTERVAL_MS)
    expect(clampHeartbeat(heartbeat({}, 1), 'honest', lookup).reasons).toEqual(['interval-out-of-bounds'])
  })

  it('never lets any figure past its bound, whatever the heartbeat says (property)', () => {
    const n = fc.double({ min: 0, max: 1e12, noNaN: true })
    const i = fc.integer({ min: 0, max: 2 ** 40 })
    fc.assert(fc.property(i, i, i, n, n, fc.dictionary(fc.constantFrom('honest', 'liar', 'ghost', 'x'), i), fc.integer({ min: 1, max: 60_000 }), fc.constantFrom('honest', 'liar', 'stranger'),
      (busy, total, queue, tps, lat, claims, interval, sender) => {
        const { heartbeat: hb } = clampHeartbeat(heartbeat({ slotsBusy: busy, slotsTotal: total, queueDepth: queue, tokensPerSec: tps, latencyMs: lat, claims }, interval), sender, lookup)
        const slots = recordSlots(records.get(sender))
        expect(hb.metrics.slotsTotal).toBeLessThanOrEqual(slots)
        expect(hb.metrics.slotsBusy).toBeLessThanOrEqual(hb.metrics.slotsTotal)
        expect(hb.metrics.tokensPerSec).toBeLessThanOrEqual(MAX_REPORTED_TOKENS_PER_SEC)
        expect(hb.metrics.latencyMs === 0 || hb.metrics.latencyMs >= MIN_REPORTED_LATENCY_MS).toBe(true)
        expect(hb.intervalMs).toBeGreaterThanOrEqual(MIN_ANNOUNCED_INTERVAL_MS)
        expect(hb.intervalMs).toBeLessThanOrEqual(MAX_ANNOUNCED_INTERVAL_MS)
        for (const [target, c] of Object.entries(hb.metrics.claims)) {
          const r = records.get(target)
          expect(r).toBeDefined()
          expect(c).toBeLessThanOrEqual(recordSlots(r) + r!.runners.filter((x) => x.state === 'ready').length * MAX_REPORTED_QUEUE_PER_RUNNER)
        }
      }))
  })
})

describe('HeartbeatRate', () => {
  it('takes at most MAX_HEARTBEATS_IN_PER_SEC of one peer per second, peers apart', () => {
    const rate = new HeartbeatRate(MAX_HEARTBEATS_IN_PER_SEC)
    let taken = 0
    for (let k = 0; k < 3 * MAX_HEARTBEATS_IN_PER_SEC; k++) if (rate.allow('a', 1000 + k)) taken++
    expect(taken).toBe(MAX_HEARTBEATS_IN_PER_SEC)
    expect(rate.allow('b', 1100)).toBe(true)
    // the next second starts afresh
    expect(rate.allow('a', 2000)).toBe(true)
  })

  it('keeps no table of every identity it ever heard', () => {
    const rate = new HeartbeatRate(MAX_HEARTBEATS_IN_PER_SEC)
    for (let i = 0; i < 5000; i++) rate.allow(`peer-${i}`, i * 10)
    expect(rate.size).toBeLessThanOrEqual(1024)
  })
})
