import { describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import type { NodeRecord } from '@llmesh/protocol'
import { mulberry32 as rng } from '@llmesh/fixtures'
import { ClusterDoc } from './cluster-doc.js'

function record (peerId: string, models: string[] = [], updatedAt = 1): NodeRecord {
  return {
    peerId,
    name: peerId,
    version: '0.1.0',
    protocol: 1,
    addrs: [],
    api: '127.0.0.1:1',
    hardware: { cpus: 2, memBytes: 1, platform: 'linux', arch: 'x64' },
    models: models.map((name) => ({ name, sizeBytes: 1, digest: 'd', format: 'gguf' as const })),
    runners: [],
    startedAt: 1,
    updatedAt
  }
}

describe('ClusterDoc', () => {
  it('converges when deltas arrive in a seeded random order, with a sync repairing what was lost', () => {
    for (const seed of [1, 2, 3, 4, 5]) {
      const random = rng(seed)
      const peers = ['a', 'b', 'c'].map((id) => new ClusterDoc(id))
      const inflight: Array<{ from: string, update: Uint8Array }> = []
      for (const p of peers) p.onLocalUpdate((update) => inflight.push({ from: p.peerId, update }))
      for (let round = 0; round < 4; round++) {
        for (const p of peers) p.setSelf(record(p.peerId, [`m${round}`], round + 1))
      }
      // deliver in random order, dropping about one message in five
      while (inflight.length > 0) {
        const [msg] = inflight.splice(Math.floor(random() * inflight.length), 1)
        if (msg == null || random() < 0.2) continue
        for (const p of peers) {
          if (p.peerId === msg.from) continue
          // a delta whose base was lost cannot be attributed yet: it is refused, and the sync repairs
          const result = p.applyRemote(msg.update, msg.from)
          if (!result.applied) expect(result.reason).toBe('unresolved')
        }
      }
      // state-vector sync both ways between every pair repairs the gaps
      for (const x of peers) {
        for (const y of peers) {
          if (x === y) continue
          expect(y.applyRemote(x.diff(y.stateVector())).applied).toBe(true)
        }
      }
      for (const p of peers) {
        expect(p.hasPending()).toBe(false)
        expect(p.records().map((r) => [r.peerId, r.models[0]?.name]).sort()).toEqual([['a', 'm3'], ['b', 'm3'], ['c', 'm3']])
      }
    }
  })

  it('drops a gossip delta that writes another peer\'s entry and counts it', () => {
    const a = new ClusterDoc('a')
    const b = new ClusterDoc('b')
    const updates: Uint8Array[] = []
    a.onLocalUpdate((u) => updates.push(u))
    a.setSelf(record('a'))
    // a's delta claimed to come from b: touches a's entry, not the sender's
    expect(b.applyRemote(updates[0]!, 'b')).toEqual({ applied: false, reason: 'foreign-entry' })
    expect(b.rejected.get('foreign-entry')).toBe(1)
    expect(b.records()).toEqual([])

    // a forged doc writing into b's key through a raw Yjs client
    const forger = new Y.Doc()
    forger.getMap('nodes').set('b', record('b', ['evil']))
    expect(b.applyRemote(Y.encodeStateAsUpdate(forger), 'x')).toEqual({ applied: false, reason: 'foreign-entry' })
  })

  it('accepts a peer deleting another peer\'s entry only where the pruning rule allows it', () => {
    const a = new ClusterDoc('a')
    const b = new ClusterDoc('b')
    const c = new ClusterDoc('c')
    a.setSelf(record('a'))
    for (const d of [b, c]) d.applyRemote(a.snapshot())
    const deltas: Uint8Array[] = []
    b.onLocalUpdate((u) => deltas.push(u))
    expect(b.prune(['a'])).toBe(1)
    expect(c.applyRemote(deltas[0]!, 'b')).toEqual({ applied: false, reason: 'foreign-delete' })
    expect(c.get('a')).toBeDefined()
    c.mayPrune = (key, sender) => key === 'a' && sender === 'b'
    expect(c.applyRemote(deltas[0]!, 'b')).toEqual({ applied: true })
    expect(c.get('a')).toBeUndefined()
    // the pruned peer comes back and writes its entry again
    a.onLocalUpdate((u) => expect(c.applyRemote(u, 'a').applied).toBe(true))
    c.applyRemote(b.diff(a.stateVector()))
    a.applyRemote(b.diff(a.stateVector()))
    a.setSelf(record('a', ['back']))
    expect(c.get('a')?.models[0]?.name).toBe('back')
  })

  it('drops garbage and nested types without throwing', () => {
    const a = new ClusterDoc('a')
    expect(a.applyRemote(new Uint8Array([1, 2, 3, 250, 251]), 'b').applied).toBe(false)
    const nested = new Y.Doc()
    const inner = new Y.Map()
    nested.getMap('nodes').set('b', inner)
    inner.set('x', 1)
    expect(a.applyRemote(Y.encodeStateAsUpdate(nested), 'b')).toEqual({ applied: false, reason: 'nested' })
    expect(a.records()).toEqual([])
  })

  it('accepts overwrites of the sender\'s own entry, and a restart from a snapshot', () => {
    const a = new ClusterDoc('a')
    const b = new ClusterDoc('b')
    a.onLocalUpdate((u) => expect(b.applyRemote(u, 'a').applied).toBe(true))
    a.setSelf(record('a', ['one']))
    a.setSelf(record('a', ['two']))
    expect(b.get('a')?.models[0]?.name).toBe('two')
    // no-op write when only updatedAt changes
    expect(a.setSelf(record('a', ['two'], 99))).toBe(false)

    const restarted = new ClusterDoc('a', a.snapshot())
    restarted.onLocalUpdate((u) => expect(b.applyRemote(u, 'a').applied).toBe(true))
    expect(restarted.get('a')?.models[0]?.name).toBe('two')
    restarted.setSelf(record('a', ['three']))
    expect(b.get('a')?.models[0]?.name).toBe('three')
  })

  it('keeps the document bounded over many rewrites of one entry', () => {
    const a = new ClusterDoc('a')
    a.setSelf(record('a', ['m0']))
    const steady = a.snapshot().length
    for (let i = 1; i <= 2000; i++) a.setSelf(record('a', [`m${i % 10}`], i))
    expect(a.snapshot().length).toBeLessThan(steady * 2)
  })
})
