import { createHash } from 'node:crypto'
import { afterEach, describe, expect, it, vi } from 'vitest'
import * as Y from 'yjs'
import type { NodeRecord, UnsignedNodeRecord } from '@llmesh/protocol'
import { mulberry32 as rng, unsignedRecord } from '@llmesh/testkit'
import { ClusterDoc } from './cluster-doc.js'
import type { PruneRule } from './prune-rule.js'
import { recordContent, type RecordVerifier } from './record-trust.js'
import { MAX_DOC_BYTES, MAX_ENTRIES, MAX_RECORD_BYTES } from './constants.js'

/**
 * A stand-in for the owner's key, for this package's own logic: the "signature" is a hash of the
 * owner's id and the content, so anyone could forge it, but a record altered after signing, or
 * signed for another id, fails. The real Ed25519 verifier is tested in @llmesh/mesh and by the
 * fuzz and attack tests.
 */
function hashSig (peerId: string, content: Uint8Array): string {
  return createHash('sha256').update(peerId).update(content).digest('base64url')
}
const verifier: RecordVerifier = {
  verify: (record, content) => record.sig === hashSig(record.peerId, content) ? undefined : 'bad-signature'
}
function newDoc (peerId: string, snapshot?: Uint8Array, pruneRule?: PruneRule): ClusterDoc {
  return new ClusterDoc(peerId, snapshot, { verifier, signer: { sign: (content) => hashSig(peerId, content) }, ...(pruneRule != null ? { pruneRule } : {}) })
}
function signed (r: UnsignedNodeRecord): NodeRecord {
  return { ...r, sig: hashSig(r.peerId, recordContent(r)) }
}

const record = (peerId: string, models: string[] = [], updatedAt = 1): UnsignedNodeRecord =>
  unsignedRecord(peerId, { models, startedAt: 1, updatedAt, hardware: { cpus: 2, memBytes: 1, platform: 'linux', arch: 'x64' } })

describe('ClusterDoc', () => {
  it('converges when deltas arrive in a seeded random order, with a sync repairing what was lost', () => {
    for (const seed of [1, 2, 3, 4, 5]) {
      const random = rng(seed)
      const peers = ['a', 'b', 'c'].map((id) => newDoc(id))
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
    const a = newDoc('a')
    const b = newDoc('b')
    const updates: Uint8Array[] = []
    a.onLocalUpdate((u) => updates.push(u))
    a.setSelf(record('a'))
    // a's delta claimed to come from b: touches a's entry, not the sender's
    expect(b.applyRemote(updates[0]!, 'b')).toEqual({ applied: false, reason: 'foreign-entry' })
    expect(b.rejected.get('foreign-entry')).toBe(1)
    expect(b.records()).toEqual([])

    // a forged doc writing into b's key through a raw Yjs client
    const forger = new Y.Doc()
    forger.getMap('nodes').set('b', signed(record('b', ['evil'])))
    expect(b.applyRemote(Y.encodeStateAsUpdate(forger), 'x')).toEqual({ applied: false, reason: 'foreign-entry' })
  })

  it('accepts a peer deleting another peer\'s entry only where the pruning rule allows it', () => {
    const a = newDoc('a')
    const b = newDoc('b')
    // the rule denies until `allowed`, as it does until a host is long dead
    let allowed = false
    const c = newDoc('c', undefined, (key, _last, sender) => allowed && key === 'a' && (sender === 'b' || sender == null))
    a.setSelf(record('a'))
    for (const d of [b, c]) d.applyRemote(a.snapshot())
    const deltas: Uint8Array[] = []
    b.onLocalUpdate((u) => deltas.push(u))
    expect(b.prune(['a'])).toBe(1)
    expect(c.applyRemote(deltas[0]!, 'b')).toEqual({ applied: false, reason: 'foreign-delete' })
    expect(c.get('a')).toBeDefined()
    allowed = true
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
    const a = newDoc('a')
    expect(a.applyRemote(new Uint8Array([1, 2, 3, 250, 251]), 'b').applied).toBe(false)
    const nested = new Y.Doc()
    const inner = new Y.Map()
    nested.getMap('nodes').set('b', inner)
    inner.set('x', 1)
    expect(a.applyRemote(Y.encodeStateAsUpdate(nested), 'b')).toEqual({ applied: false, reason: 'nested' })
    expect(a.records()).toEqual([])
  })

  it('accepts overwrites of the sender\'s own entry, and a restart from a snapshot', () => {
    const a = newDoc('a')
    const b = newDoc('b')
    a.onLocalUpdate((u) => expect(b.applyRemote(u, 'a').applied).toBe(true))
    a.setSelf(record('a', ['one']))
    a.setSelf(record('a', ['two']))
    expect(b.get('a')?.models[0]?.name).toBe('two')
    // no-op write when only updatedAt changes
    expect(a.setSelf(record('a', ['two'], 99))).toBe(false)

    const restarted = newDoc('a', a.snapshot())
    restarted.onLocalUpdate((u) => expect(b.applyRemote(u, 'a').applied).toBe(true))
    expect(restarted.get('a')?.models[0]?.name).toBe('two')
    restarted.setSelf(record('a', ['three']))
    expect(b.get('a')?.models[0]?.name).toBe('three')
  })

  it('keeps the document bounded over many rewrites of one entry', () => {
    const a = newDoc('a')
    a.setSelf(record('a', ['m0']))
    const steady = a.snapshot().length
    for (let i = 1; i <= 2000; i++) a.setSelf(record('a', [`m${i % 10}`], i))
    expect(a.snapshot().length).toBeLessThan(steady * 2)
  })
})

/** A raw Yjs client that holds `from`'s document and writes whatever it likes into it. */
function forger (from: ClusterDoc): { doc: Y.Doc, since: Uint8Array } {
  const doc = new Y.Doc()
  Y.applyUpdate(doc, from.snapshot())
  return { doc, since: Y.encodeStateVector(doc) }
}

/**
 * Raw Yjs clients, one per entry (the one-entry-per-client rule), each holding `to`'s document,
 * write `entries`; their updates reach `to` as one sync update.
 */
function write (to: ClusterDoc, entries: Array<[string, unknown]>): ReturnType<ClusterDoc['applyRemote']> {
  const base = to.snapshot()
  const sv = to.stateVector()
  const updates = entries.map(([key, value]) => {
    const client = new Y.Doc()
    Y.applyUpdate(client, base)
    client.getMap('nodes').set(key, value)
    return Y.encodeStateAsUpdate(client, sv)
  })
  return to.applyRemote(Y.mergeUpdates(updates))
}

/** Moves fake time on by `ms`, running the document's timers that fall due (its self-rewrite). */
async function tick (ms = 5): Promise<void> {
  await vi.advanceTimersByTimeAsync(ms)
}

describe('ClusterDoc: signed records and owner repair', () => {
  afterEach(() => { vi.useRealTimers() })

  it('leaves out records that fail the schema, the key or the signature, by any path, and counts them once', () => {
    const a = newDoc('a')
    expect(write(a, [
      ['b', { ...signed(record('b')), name: 'renamed after signing' }], // bad signature
      ['c', signed(record('x'))], // under another key
      ['d', { peerId: 'd', slots: 1e6 }], // not a record
      ['e', signed({ ...record('e'), runners: [{ id: 'r', kind: 'llama-server', model: 'm', state: 'ready', slots: 1000 }] })], // slots past the bound
      ['g', signed(record('g'))] // fine
    ])).toEqual({ applied: true })
    const update = a.snapshot()
    expect(a.records().map((r) => r.peerId)).toEqual(['g'])
    a.records()
    expect(Object.fromEntries(a.stats.invalidRecords)).toEqual({ 'bad-signature': 1, 'key-mismatch': 1, schema: 2 })
    // a snapshot holding them: restored, and still out of the view
    const restarted = newDoc('a', update)
    expect(restarted.records().map((r) => r.peerId)).toEqual(['g'])
  })

  it('rewrites its own entry at once when a sync brings a foreign overwrite or delete of it, and the rewrite wins everywhere', async () => {
    vi.useFakeTimers()
    const a = newDoc('a')
    const c = newDoc('c')
    a.onLocalUpdate((u) => c.applyRemote(u, 'a'))
    a.setSelf(record('a', ['mine']))
    c.applyRemote(a.snapshot())

    // over sync (no sender to blame): a new Yjs client overwrites a's entry with a forgery
    const f = forger(a)
    f.doc.getMap('nodes').set('a', signed(record('a', ['evil'])))
    const forged = Y.encodeStateAsUpdate(f.doc, f.since)
    expect(a.applyRemote(forged).applied).toBe(true)
    expect(c.applyRemote(forged).applied).toBe(true)
    await tick()
    expect(a.stats.selfRewrites).toBe(1)
    expect(a.get('a')?.models[0]?.name).toBe('mine')
    expect(c.get('a')?.models[0]?.name).toBe('mine')
    expect((a.doc.getMap('nodes').get('a') as NodeRecord).models[0]?.name).toBe('mine')

    // a foreign delete, then a peer that got the delete only later still converges on a's rewrite
    const late = newDoc('late')
    late.applyRemote(a.snapshot())
    const g = forger(a)
    g.doc.getMap('nodes').delete('a')
    const deleted = Y.encodeStateAsUpdate(g.doc, g.since)
    expect(a.applyRemote(deleted).applied).toBe(true)
    await tick(1100) // a second rewrite waits out SELF_REWRITE_MIN_INTERVAL_MS
    expect(a.stats.selfRewrites).toBe(2)
    late.applyRemote(deleted)
    late.applyRemote(a.diff(late.stateVector()))
    expect(late.get('a')?.models[0]?.name).toBe('mine')
  })

  it('keeps a peer\'s last valid record in the view after a foreign delete or overwrite until the pruning rule allows removal', () => {
    const a = newDoc('a')
    let allowed = false
    const c = newDoc('c', undefined, (key) => allowed && key === 'a')
    a.setSelf(record('a', ['real']))
    c.applyRemote(a.snapshot())
    expect(c.get('a')).toBeDefined()
    const f = forger(c)
    f.doc.getMap('nodes').set('a', { ...signed(record('a')), sig: 'forged' })
    c.applyRemote(Y.encodeStateAsUpdate(f.doc, f.since))
    expect(c.get('a')?.models[0]?.name).toBe('real')
    expect(c.stats.keptAfterForeignChange).toBe(1)
    const g = forger(c)
    g.doc.getMap('nodes').delete('a')
    c.applyRemote(Y.encodeStateAsUpdate(g.doc, g.since))
    expect(c.get('a')?.models[0]?.name).toBe('real')
    // once the rule allows it (long dead), the kept record goes at the next read
    allowed = true
    expect(c.get('a')).toBeUndefined()
    expect(c.records()).toEqual([])
  })

  it('keeps a record that arrived since the last read of the view when a sync deletes or overwrites it', () => {
    // the view is built at reads; nobody reads c's between a's record arriving and the attack
    const a = newDoc('a')
    a.setSelf(record('a', ['real']))
    const c = newDoc('c')
    c.applyRemote(a.snapshot())
    const f = forger(c)
    f.doc.getMap('nodes').delete('a')
    expect(c.applyRemote(Y.encodeStateAsUpdate(f.doc, f.since))).toEqual({ applied: true })
    expect(c.keys()).toEqual([])
    expect(c.get('a')?.models[0]?.name).toBe('real')
    expect(c.stats.keptAfterForeignChange).toBe(1)

    // the same from a restart: the snapshot's records are the view before the first update
    const restarted = newDoc('r', a.snapshot())
    const g = forger(restarted)
    g.doc.getMap('nodes').set('a', { ...signed(record('a')), sig: 'forged' })
    expect(restarted.applyRemote(Y.encodeStateAsUpdate(g.doc, g.since))).toEqual({ applied: true })
    expect(restarted.get('a')?.models[0]?.name).toBe('real')

    // an owner's newer record, not read yet, is the one kept, not the one read before it
    const d = newDoc('d')
    d.applyRemote(a.snapshot())
    expect(d.get('a')?.models[0]?.name).toBe('real')
    a.onLocalUpdate((u) => expect(d.applyRemote(u, 'a').applied).toBe(true))
    a.setSelf(record('a', ['newer']))
    const h = forger(d)
    h.doc.getMap('nodes').delete('a')
    expect(d.applyRemote(Y.encodeStateAsUpdate(h.doc, h.since))).toEqual({ applied: true })
    expect(d.get('a')?.models[0]?.name).toBe('newer')
  })

  it('takes a peer\'s gossip delta that carries the whole delete set of the document (deletes already done are no news)', () => {
    const a = newDoc('a')
    const c = newDoc('c')
    a.setSelf(record('a', ['one']))
    a.setSelf(record('a', ['two'])) // deletes a's first value
    c.applyRemote(a.snapshot())
    // peer h writes its own entry from a copy of the whole document: its update lists a's old delete
    const f = forger(c)
    f.doc.getMap('nodes').set('h', signed(record('h')))
    expect(Y.decodeUpdate(Y.encodeStateAsUpdate(f.doc, f.since)).ds.clients.size).toBeGreaterThan(0)
    expect(c.applyRemote(Y.encodeStateAsUpdate(f.doc, f.since), 'h')).toEqual({ applied: true })
    expect(c.get('h')).toBeDefined()
    expect(c.get('a')?.models[0]?.name).toBe('two')
  })
})

describe('ClusterDoc: hard bounds', () => {
  it('refuses a value past MAX_RECORD_BYTES, text and nested content, and never writes its own oversized record', () => {
    const a = newDoc('a')
    expect(write(a, [['x', 'y'.repeat(MAX_RECORD_BYTES)]])).toEqual({ applied: false, reason: 'record-too-large' })
    const t = new Y.Doc()
    t.getText('nodes').insert(0, 'text')
    expect(a.applyRemote(Y.encodeStateAsUpdate(t)).applied).toBe(false)
    const big = record('a', Array.from({ length: 1000 }, (_, i) => `model-${i}-${'n'.repeat(200)}`))
    expect(a.setSelf(big)).toBe(false)
    expect(a.get('a')).toBeUndefined()
    expect(a.rejected.get('record-too-large')).toBe(2)
  })

  it('refuses growth past MAX_DOC_BYTES and MAX_ENTRIES, still takes updates that do not grow it', () => {
    const a = newDoc('a')
    const chunk = 'z'.repeat(MAX_RECORD_BYTES - 100)
    const n = Math.floor(MAX_DOC_BYTES / MAX_RECORD_BYTES) - 2
    expect(write(a, Array.from({ length: n }, (_, i): [string, unknown] => [`k${i}`, chunk]))).toEqual({ applied: true })
    expect(write(a, [['one-more', chunk], ['and-another', chunk], ['and-a-third', chunk]])).toEqual({ applied: false, reason: 'doc-too-large' })
    expect(a.size().bytes).toBeLessThanOrEqual(MAX_DOC_BYTES)
    // the owner of an entry may still write it, and small entries still fit
    a.setSelf(record('a', ['fits']))
    expect(a.get('a')?.models[0]?.name).toBe('fits')

    const b = newDoc('b')
    expect(write(b, Array.from({ length: MAX_ENTRIES }, (_, i): [string, unknown] => [`k${i}`, i]))).toEqual({ applied: true })
    expect(write(b, [['over', 1]])).toEqual({ applied: false, reason: 'too-many-entries' })
  })

  it('drops a backlog of parked updates past MAX_PENDING_BYTES', () => {
    const a = newDoc('a')
    const f = new Y.Doc()
    f.getMap('nodes').set('gap', 1) // never sent: everything after it waits for it
    const sv = Y.encodeStateVector(f)
    for (let i = 0; i < 20; i++) {
      f.getMap('nodes').set('gap', 'p'.repeat(100_000) + String(i))
      a.applyRemote(Y.encodeStateAsUpdate(f, sv))
    }
    expect(a.stats.pendingDropped).toBeGreaterThan(0)
    expect(a.size().bytes).toBeLessThanOrEqual(MAX_DOC_BYTES)
  })
})
