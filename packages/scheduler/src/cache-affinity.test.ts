import { describe, expect, it } from 'vitest'
import { nodeRecord } from '@llmesh/testkit'
import type { NodeRecord, RunnerInfo } from '@llmesh/protocol'
import type { RankInput, RankResult, TargetMetrics } from './cluster-view.js'
import { MAX_CACHED_TOKENS, PREFILL_TO_DECODE_SPEED } from './constants.js'
import { cacheSavingMs } from './performance.js'
import { estimatePromptTokens } from './prefix-key.js'
import { rank } from './rank.js'

const node = (peerId: string, runners: Array<Partial<RunnerInfo>> = [{ slots: 4 }]): NodeRecord => nodeRecord(peerId, { runners })
const NOW = 100_000
const KEY = 'c0ffee0123456789'
/** every host equally fast: 1000 tokens/s, 20 ms to the first token, 4 slots */
const host = (m: TargetMetrics = {}): TargetMetrics => ({ heartbeatAt: NOW - 100, slotsTotal: 4, slotsBusy: 0, queueDepth: 0, tokensPerSecEwma: 1000, latencyMsEwma: 20, ...m })

function input (metrics: Record<string, TargetMetrics>, over: Partial<RankInput['request']> = {}, affinity?: RankInput['affinity']): RankInput {
  const nodes = [node('a'), node('b'), node('c')]
  return {
    view: { nodes, metrics: new Map(Object.entries(metrics)) },
    request: { model: 'tiny', prefixKey: KEY, promptTokens: 2000, expectedTokens: 32, ...over },
    selfPeerId: 'e',
    reachable: new Set(nodes.map((n) => n.peerId)),
    inflight: new Map(),
    random: () => 0.5,
    now: NOW,
    ...(affinity != null ? { affinity } : {})
  }
}

function ok (r: RankResult): Extract<RankResult, { ok: true }> {
  if (!r.ok) throw new Error(`expected a ranking, got ${r.code}: ${r.message}`)
  return r
}
const reasonOf = (r: ReturnType<typeof ok>, peerId: string, prefix: string): string | undefined =>
  r.targets.find((t) => t.peerId === peerId)?.reasons.find((x) => x.startsWith(prefix))

describe('rank: performance follows the conversation to its cache', () => {
  it('sends a conversation to the host that served it last, over equal idle hosts', () => {
    for (const holder of ['a', 'b', 'c']) {
      const r = ok(rank(input({ a: host(), b: host(), c: host(), [holder]: host({ cache: new Map([[KEY, { at: NOW - 500, tokens: 2000 }]]) }) })))
      expect(r.targets[0]!.peerId).toBe(holder)
      expect(reasonOf(r, holder, 'cache=')).toBe('cache=hit')
      expect(reasonOf(r, holder, 'cache-saves=')).toBe(`cache-saves=${Math.round(2000 * 1000 / (1000 * PREFILL_TO_DECODE_SPEED))}ms`)
      for (const other of ['a', 'b', 'c'].filter((x) => x !== holder)) expect(reasonOf(r, other, 'cache=')).toBe(`cache=moved(from=${holder}: load=0/4)`)
    }
  })

  it('sends a conversation no host holds to the first host of its rendezvous order with a free slot, the same from every entry', () => {
    const keys = Array.from({ length: 60 }, (_, i) => `k${i}`)
    const homes = new Map<string, number>()
    for (const key of keys) {
      const picks = new Set(['e', 'a', 'b'].map((self) => ok(rank({ ...input({ a: host(), b: host(), c: host() }, { prefixKey: key }), selfPeerId: self })).targets[0]!.peerId))
      expect(picks.size).toBe(1)
      const [home] = picks
      homes.set(home!, (homes.get(home!) ?? 0) + 1)
      const r = ok(rank(input({ a: host(), b: host(), c: host() }, { prefixKey: key })))
      expect(r.targets.every((t) => t.reasons.includes('cache=new'))).toBe(true)
      expect(r.targets[0]!.reasons).toContain('cache-home=rendezvous')
      expect(r.targets[0]!.waitForCache).toBeUndefined()
      // a full home passes it on to a host with a free slot
      const full = ok(rank(input({ a: host(), b: host(), c: host(), [home!]: host({ slotsBusy: 4 }) }, { prefixKey: key })))
      expect(full.targets[0]!.peerId).not.toBe(home)
    }
    // spread over every host
    expect([...homes.keys()].sort()).toEqual(['a', 'b', 'c'])
    // without a key nothing of this: no cache reasons
    const plain = ok(rank(input({ a: host(), b: host(), c: host() }, { prefixKey: undefined })))
    expect(plain.targets.some((t) => t.reasons.some((x) => x.startsWith('cache')))).toBe(false)
  })

  it('waits for a slot on the cache host while its queue is short, though other hosts are idle', () => {
    for (const queueDepth of [0, 1, 4]) {
      const r = ok(rank(input({ a: host({ slotsBusy: 4, queueDepth, cache: new Map([[KEY, { at: NOW - 500, tokens: 100 }]]) }), b: host(), c: host() })))
      expect(r.targets[0]).toMatchObject({ peerId: 'a', waitForCache: true })
      expect(reasonOf(r, 'a', 'cache=')).toBe('cache=hit')
      expect(r.allFull).toBe(false)
    }
    // with a free slot (as this router sees it) too: another router may have taken it
    const free = ok(rank(input({ a: host({ slotsBusy: 3, cache: new Map([[KEY, { at: NOW - 500, tokens: 100 }]]) }), b: host(), c: host() })))
    expect(free.targets[0]).toMatchObject({ peerId: 'a', waitForCache: true })
  })

  it('moves the conversation when the queue on its host costs more than the prefill saved', () => {
    const r = ok(rank(input({ a: host({ slotsBusy: 4, queueDepth: 40, cache: new Map([[KEY, { at: NOW - 500, tokens: 2000 }]]) }), b: host(), c: host() })))
    expect(r.targets[0]!.peerId).not.toBe('a')
    expect(reasonOf(r, r.targets[0]!.peerId, 'cache=')).toBe('cache=moved(from=a: load=44/4)')
    // past a short queue (more than one waiting per slot) the cost decides: a short
    // conversation moves, a long one (its prefill worth more than the wait) stays
    const queued = (tokens: number): TargetMetrics => host({ slotsBusy: 4, queueDepth: 6, cache: new Map([[KEY, { at: NOW - 500, tokens }]]) })
    expect(ok(rank(input({ a: queued(10), b: host(), c: host() }))).targets[0]!.peerId).not.toBe('a')
    const long = ok(rank(input({ a: queued(40_000), b: host(), c: host() })))
    expect(long.targets[0]).toMatchObject({ peerId: 'a', waitForCache: true })
  })

  it('weighs the tokens the host says it holds, at its measured prefill rate; the request\'s estimate when only this router knows', () => {
    const held = host({ prefillTokensPerSecEwma: 20_000, cache: new Map([[KEY, { at: NOW - 500, tokens: 6000 }]]) })
    const r = ok(rank(input({ a: held, b: host(), c: host() })))
    expect(reasonOf(r, 'a', 'cache-saves=')).toBe('cache-saves=300ms')
    // only this router's memory: its estimate (2000 tokens) at 8 x 1000 tokens/s
    const mine = ok(rank(input({ a: host(), b: host(), c: host() }, {}, new Map([[KEY, { peerId: 'b', at: NOW - 50 }]]))))
    expect(mine.targets[0]!.peerId).toBe('b')
    expect(reasonOf(mine, 'b', 'cache-saves=')).toBe(`cache-saves=${Math.round(2000 * 1000 / (1000 * PREFILL_TO_DECODE_SPEED))}ms`)
  })

  it('follows the latest news of a conversation: a host that served it since this router sent it elsewhere', () => {
    const metrics = { a: host({ cache: new Map([[KEY, { at: NOW - 5000, tokens: 2000 }]]) }), b: host(), c: host({ cache: new Map([[KEY, { at: NOW - 300, tokens: 2000 }]]) }) }
    // this router sent it to b 1 s ago; c has served it since (another router moved it)
    const r = ok(rank(input(metrics, {}, new Map([[KEY, { peerId: 'b', at: NOW - 1000 }]]))))
    expect(r.targets[0]!.peerId).toBe('c')
    // and its own send counts when it is the latest
    const mine = ok(rank(input(metrics, {}, new Map([[KEY, { peerId: 'b', at: NOW - 100 }]]))))
    expect(mine.targets[0]!.peerId).toBe('b')
  })

  it('prefix-affinity stays the pure rendezvous form, and says what the cache would have done', () => {
    const metrics = { a: host(), b: host(), c: host() }
    const pure = ok(rank(input(metrics, { strategy: 'prefix-affinity' })))
    for (const holder of ['a', 'b', 'c']) {
      const r = ok(rank(input({ ...metrics, [holder]: host({ cache: new Map([[KEY, { at: NOW - 500, tokens: 2000 }]]) }) }, { strategy: 'prefix-affinity' })))
      expect(r.targets[0]!.peerId).toBe(pure.targets[0]!.peerId)
      expect(reasonOf(r, holder, 'cache=')).toBe('cache=hit')
    }
  })
})

describe('the cache saving and the prompt estimate', () => {
  it('is the tokens held at the measured prefill rate, else PREFILL_TO_DECODE_SPEED times the decode rate; nothing without a size', () => {
    const priors = { latencyMs: 20, tokensPerSec: 50 }
    expect(cacheSavingMs(8000, host({ prefillTokensPerSecEwma: 16_000 }), priors)).toBeCloseTo(500)
    expect(cacheSavingMs(8000, host({ tokensPerSecEwma: 1000 }), priors)).toBeCloseTo(8000 * 1000 / (1000 * PREFILL_TO_DECODE_SPEED))
    expect(cacheSavingMs(8000, undefined, priors)).toBeCloseTo(8000 * 1000 / (50 * PREFILL_TO_DECODE_SPEED))
    expect(cacheSavingMs(undefined, host(), priors)).toBe(0)
    // a reported prefill slower than decoding, or a cache past MAX_CACHED_TOKENS, counts for no more than they allow
    expect(cacheSavingMs(8000, host({ tokensPerSecEwma: 1000, prefillTokensPerSecEwma: 1 }), priors)).toBeCloseTo(8000)
    expect(cacheSavingMs(2 ** 31, host({ tokensPerSecEwma: 1000 }), priors)).toBeCloseTo(MAX_CACHED_TOKENS * 1000 / (1000 * PREFILL_TO_DECODE_SPEED))
  })

  it('counts the text of messages and parts, and a raw prompt, at four characters a token', () => {
    expect(estimatePromptTokens({ messages: [{ role: 'system', content: 'x'.repeat(400) }, { role: 'user', content: [{ type: 'text', text: 'y'.repeat(41) }, { type: 'image_url', image_url: { url: 'data:' } }] }] })).toBe(111)
    expect(estimatePromptTokens({ prompt: 'z'.repeat(8) })).toBe(2)
    expect(estimatePromptTokens({ messages: 'nope' })).toBe(0)
  })
})
