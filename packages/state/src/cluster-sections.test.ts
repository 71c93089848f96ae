import { createHash } from 'node:crypto'
import { afterEach, describe, expect, it, vi } from 'vitest'
import * as Y from 'yjs'
import type { UnsignedNodeRecord } from '@llmesh/protocol'
import { placement, unsignedPinsEntry, unsignedPlacementsEntry, unsignedRecord } from '@llmesh/testkit'
import { ClusterDoc } from './cluster-doc.js'
import type { PruneRule } from './prune-rule.js'
import { NODES, PINS, PLACEMENTS, entryContent, type RecordVerifier, type Section } from './record-trust.js'
import { MAX_DOC_BYTES, MAX_ENTRIES, MAX_RECORD_BYTES } from './constants.js'

/**
 * The placements and pins sections: the same trust rules as node records, over all sections.
 * The owner's key is stood in for as in cluster-doc.test.ts (a hash of the owner's id and the
 * signed content: forgeable, but an entry altered after signing, signed for another id or in
 * another section fails); the Ed25519 verifier over these sections is tested in @llmesh/mesh.
 */
function hashSig (peerId: string, content: Uint8Array): string {
  return createHash('sha256').update(peerId).update(content).digest('base64url')
}
const verifier: RecordVerifier = {
  verify: (entry, content) => entry.sig === hashSig(entry.peerId, content) ? undefined : 'bad-signature'
}
function newDoc (peerId: string, snapshot?: Uint8Array, pruneRule?: PruneRule): ClusterDoc {
  return new ClusterDoc(peerId, snapshot, { verifier, signer: { sign: (content) => hashSig(peerId, content) }, ...(pruneRule != null ? { pruneRule } : {}) })
}
/** `entry` as its owner signs it for `section`. */
function signedIn (section: Section, entry: Record<string, unknown> & { peerId: string }): Record<string, unknown> {
  return { ...entry, sig: hashSig(entry.peerId, entryContent(section, entry)) }
}

const record = (peerId: string, models: string[] = [], updatedAt = 1): UnsignedNodeRecord =>
  unsignedRecord(peerId, { models, startedAt: 1, updatedAt })
const placements = (peerId: string, models: string[], updatedAt = 1): ReturnType<typeof unsignedPlacementsEntry> =>
  unsignedPlacementsEntry(peerId, models.map((m) => placement(m, { state: 'ready', since: 1 })), updatedAt)
const pins = (peerId: string, models: string[], updatedAt = 1): ReturnType<typeof unsignedPinsEntry> =>
  unsignedPinsEntry(peerId, models.map((model) => ({ model, at: updatedAt })), updatedAt)

/** A peer writing its entry in every section. */
function writeAll (d: ClusterDoc, models: string[], updatedAt = 1): void {
  d.setSelf(record(d.peerId, models, updatedAt))
  d.setOwn(PLACEMENTS, placements(d.peerId, models, updatedAt))
  d.setOwn(PINS, pins(d.peerId, models, updatedAt))
}

/** What a document's views show of every section: models by peer id, sorted. */
function shown (d: ClusterDoc): Record<Section, Array<[string, string[]]>> {
  const sorted = (rows: Array<[string, string[]]>): Array<[string, string[]]> => rows.sort(([x], [y]) => x < y ? -1 : 1)
  return {
    nodes: sorted(d.records().map((r) => [r.peerId, r.models.map((m) => m.name)])),
    placements: sorted([...d.placements()].map(([k, e]) => [k, e.placements.map((p) => p.model)])),
    pins: sorted([...d.pins()].map(([k, e]) => [k, e.pins.map((p) => p.model)]))
  }
}

/**
 * Raw Yjs clients, one per key (the one-key-per-client rule), write `entries` (section, key,
 * value) into a copy of `to`'s document; their writes reach `to` as one sync update. One Y.Doc
 * plays every client: it takes a fresh client id before each key's writes.
 */
let nextClient = 1_000_000
function write (to: ClusterDoc, entries: Array<[Section, string, unknown]>): ReturnType<ClusterDoc['applyRemote']> {
  const client = new Y.Doc()
  Y.applyUpdate(client, to.snapshot())
  const sv = Y.encodeStateVector(client)
  const byKey = new Map<string, Array<[Section, unknown]>>()
  for (const [section, key, value] of entries) byKey.set(key, [...(byKey.get(key) ?? []), [section, value]])
  for (const [key, writes] of byKey) {
    client.clientID = nextClient++
    client.transact(() => { for (const [section, value] of writes) client.getMap(section).set(key, value) })
  }
  return to.applyRemote(Y.encodeStateAsUpdate(client, sv))
}

/** A raw Yjs client that holds `from`'s document and writes whatever it likes into it. */
function forger (from: ClusterDoc): { doc: Y.Doc, since: Uint8Array } {
  const doc = new Y.Doc()
  Y.applyUpdate(doc, from.snapshot())
  return { doc, since: Y.encodeStateVector(doc) }
}

describe('ClusterDoc: placements and pins', () => {
  afterEach(() => { vi.useRealTimers() })

  it('shows each peer the other\'s placements and pins, by gossip and by sync, and tells once per change', () => {
    const a = newDoc('a')
    const b = newDoc('b')
    const c = newDoc('c')
    a.onLocalUpdate((u) => expect(b.applyRemote(u, 'a')).toEqual({ applied: true }))
    b.onLocalUpdate((u) => expect(a.applyRemote(u, 'b')).toEqual({ applied: true }))
    const changes: Array<Section[]> = []
    b.onChange((sections) => changes.push([...sections].sort()))
    writeAll(a, ['m1'])
    writeAll(b, ['m2'])
    const both = { nodes: [['a', ['m1']], ['b', ['m2']]], placements: [['a', ['m1']], ['b', ['m2']]], pins: [['a', ['m1']], ['b', ['m2']]] }
    expect(shown(a)).toEqual(both)
    expect(shown(b)).toEqual(both)
    // one call per transaction, local or remote, naming the section it changed
    expect(changes).toEqual([[NODES], [PLACEMENTS], [PINS], [NODES], [PLACEMENTS], [PINS]])

    // nothing but updatedAt: no write, no change
    expect(a.setOwn(PLACEMENTS, placements('a', ['m1'], 99))).toBe(false)
    expect(a.setOwn(PINS, pins('a', ['m1']))).toBe(false)
    expect(a.setOwn(PLACEMENTS, placements('a', ['m1', 'm3'], 2))).toBe(true)
    expect(b.placements().get('a')?.placements.map((p) => p.model)).toEqual(['m1', 'm3'])
    expect(changes.at(-1)).toEqual([PLACEMENTS])

    // a sync carrying several sections of several peers is one change
    changes.length = 0
    c.onChange((sections) => changes.push([...sections].sort()))
    expect(c.applyRemote(a.diff(c.stateVector()))).toEqual({ applied: true })
    expect(shown(c)).toEqual({ ...both, placements: [['a', ['m1', 'm3']], ['b', ['m2']]] })
    expect(changes).toEqual([[NODES, PINS, PLACEMENTS]])
    // an update that brings nothing new changes nothing
    expect(c.applyRemote(a.diff(new Uint8Array([0])))).toEqual({ applied: true })
    expect(changes).toHaveLength(1)
  })

  it('writes only its own entries', () => {
    const a = newDoc('a')
    expect(() => a.setOwn(PLACEMENTS, placements('b', ['m']))).toThrow()
    expect(() => a.setOwn(NODES as typeof PINS, pins('a', ['m']))).toThrow()
    expect(a.placements().size).toBe(0)
    const unsigned = new ClusterDoc('a', undefined, { verifier })
    expect(() => unsigned.setOwn(PINS, pins('a', ['m']))).toThrow()
  })

  it('refuses a gossip update that writes another peer\'s placements or pins', () => {
    const a = newDoc('a')
    const b = newDoc('b')
    const updates: Uint8Array[] = []
    a.onLocalUpdate((u) => updates.push(u))
    a.setOwn(PLACEMENTS, placements('a', ['m']))
    // a's delta, claimed to come from b
    expect(b.applyRemote(updates[0]!, 'b')).toEqual({ applied: false, reason: 'foreign-entry' })
    expect(b.placements().size).toBe(0)

    // a raw client writing b's pins and placements, sent as x
    for (const section of [PLACEMENTS, PINS] as const) {
      const f = new Y.Doc()
      f.getMap(section).set('b', signedIn(section, section === PINS ? pins('b', ['evil']) : placements('b', ['evil'])))
      expect(b.applyRemote(Y.encodeStateAsUpdate(f), 'x')).toEqual({ applied: false, reason: 'foreign-entry' })
    }
    // x's delta: its own node record, and from a second client someone else's pins
    const own = new Y.Doc()
    own.getMap(NODES).set('x', signedIn(NODES, record('x')))
    const other = new Y.Doc()
    other.getMap(PINS).set('b', signedIn(PINS, pins('b', ['evil'])))
    expect(b.applyRemote(Y.mergeUpdates([Y.encodeStateAsUpdate(own), Y.encodeStateAsUpdate(other)]), 'x')).toEqual({ applied: false, reason: 'foreign-entry' })
    expect(b.rejected.get('foreign-entry')).toBe(4)
    expect(shown(b)).toEqual({ nodes: [], placements: [], pins: [] })
  })

  it('refuses a sync update in which one Yjs client writes under two keys, across sections', () => {
    const c = newDoc('c')
    // one new client: x's node record, y's placements
    const f = new Y.Doc()
    f.getMap(NODES).set('x', signedIn(NODES, record('x')))
    f.getMap(PLACEMENTS).set('y', signedIn(PLACEMENTS, placements('y', ['m'])))
    expect(c.applyRemote(Y.encodeStateAsUpdate(f))).toEqual({ applied: false, reason: 'client-key-mismatch' })

    // a client already known to write a's entries, now writing b's pins
    const a = newDoc('a')
    writeAll(a, ['m'])
    c.applyRemote(a.snapshot())
    const g = forger(c)
    g.doc.clientID = a.doc.clientID
    g.doc.getMap(PINS).set('b', signedIn(PINS, pins('b', ['evil'])))
    expect(c.applyRemote(Y.encodeStateAsUpdate(g.doc, g.since))).toEqual({ applied: false, reason: 'client-key-mismatch' })
    expect(c.rejected.get('client-key-mismatch')).toBe(2)
    expect(shown(c)).toEqual({ nodes: [['a', ['m']]], placements: [['a', ['m']]], pins: [['a', ['m']]] })

    // one client writing one key in every section is the owner's own way of writing
    expect(write(c, [[NODES, 'z', signedIn(NODES, record('z'))], [PLACEMENTS, 'z', signedIn(PLACEMENTS, placements('z', ['n']))], [PINS, 'z', signedIn(PINS, pins('z', ['n']))]])).toEqual({ applied: true })
    expect(c.placements().get('z')?.placements[0]?.model).toBe('n')
    expect(c.pins().get('z')?.pins[0]?.model).toBe('n')
  })

  it('leaves out an entry whose signature is forged or made for another section', () => {
    const c = newDoc('c')
    // values that pass two sections' schemas at once: only the signature's section tells them apart
    const both = { ...placements('p', ['m']), pins: [] }
    const asNode = { ...record('n'), placements: [] }
    expect(write(c, [
      [PLACEMENTS, 'p', signedIn(PINS, both)], // a pins signature over a placements value
      [PINS, 'q', signedIn(PLACEMENTS, { ...both, peerId: 'q' })], // and the other way round
      [PLACEMENTS, 'n', signedIn(NODES, asNode)], // a node record's signature
      [PLACEMENTS, 'f', { ...signedIn(PLACEMENTS, placements('f', ['m'])), placements: [placement('evil')] }], // altered after signing
      [PINS, 'g', signedIn(PINS, pins('h', ['m']))], // under another key
      [PINS, 'j', { peerId: 'j', pins: 'all' }] // not an entry
    ])).toEqual({ applied: true })
    expect(shown(c)).toEqual({ nodes: [], placements: [], pins: [] })
    expect(Object.fromEntries(c.stats.invalidRecords)).toEqual({ 'bad-signature': 4, 'key-mismatch': 1, schema: 1 })

    // the same values, each in the section it was signed for, are in the view
    expect(write(c, [
      [PINS, 'p', signedIn(PINS, both)],
      [PLACEMENTS, 'q', signedIn(PLACEMENTS, { ...both, peerId: 'q' })],
      [NODES, 'n', signedIn(NODES, asNode)]
    ])).toEqual({ applied: true })
    expect(shown(c)).toEqual({ nodes: [['n', []]], placements: [['q', ['m']]], pins: [['p', []]] })
    expect(c.placements().has('p')).toBe(false)
  })

  it('counts every section against the hard bounds', () => {
    const a = newDoc('a')
    // MAX_ENTRIES over nodes and placements together
    expect(write(a, Array.from({ length: MAX_ENTRIES - 1 }, (_, i): [Section, string, unknown] => [i % 2 === 0 ? NODES : PLACEMENTS, `k${i}`, i]))).toEqual({ applied: true })
    expect(write(a, [[PINS, 'over-1', 1], [PLACEMENTS, 'over-2', 1]])).toEqual({ applied: false, reason: 'too-many-entries' })
    expect(write(a, [[PINS, 'last', 1]])).toEqual({ applied: true })
    expect(a.size().entries).toBe(MAX_ENTRIES)
    expect(write(a, [[PLACEMENTS, 'over-3', 1]])).toEqual({ applied: false, reason: 'too-many-entries' })

    // MAX_DOC_BYTES: a flood of large placements, then pins, then nodes
    const b = newDoc('b')
    const chunk = 'z'.repeat(MAX_RECORD_BYTES - 100)
    const n = Math.floor(MAX_DOC_BYTES / MAX_RECORD_BYTES) - 2
    expect(write(b, Array.from({ length: n }, (_, i): [Section, string, unknown] => [PLACEMENTS, `k${i}`, chunk]))).toEqual({ applied: true })
    expect(b.size().bytes).toBeGreaterThan(n * chunk.length)
    for (const section of [PINS, NODES, PLACEMENTS] as const) {
      expect(write(b, [[section, 'one-more', chunk], [section, 'and-another', chunk], [section, 'and-a-third', chunk]])).toEqual({ applied: false, reason: 'doc-too-large' })
    }
    expect(b.size().bytes).toBeLessThanOrEqual(MAX_DOC_BYTES)
    // its own small entries still fit, and an owner's oversized entry is never written
    expect(b.setOwn(PINS, pins('b', ['fits']))).toBe(true)
    expect(b.pins().get('b')?.pins[0]?.model).toBe('fits')
    const oversized = unsignedPinsEntry('b', Array.from({ length: 1200 }, (_, i) => ({ model: `${'m'.repeat(250)}${i}` })))
    expect(b.setOwn(PINS, oversized)).toBe(false)
    expect(b.rejected.get('record-too-large')).toBe(1)
    expect(b.pins().get('b')?.pins[0]?.model).toBe('fits')
  })

  it('measures an owner\'s overwrite in place of its old value, near the bounds', () => {
    const o = newDoc('o')
    const big = (tag: string): ReturnType<typeof unsignedPlacementsEntry> =>
      unsignedPlacementsEntry('o', Array.from({ length: 64 }, (_, i) => placement(`m${i}`, { state: 'failed', error: `${tag}${'e'.repeat(1500)}` })))
    o.setOwn(PLACEMENTS, big('first'))
    const a = newDoc('a')
    expect(a.applyRemote(o.snapshot())).toEqual({ applied: true })
    const own = a.size().bytes
    // fill the rest of MAX_DOC_BYTES but for half of o's entry: a value of its size more would not fit
    const filler = MAX_DOC_BYTES - own / 2 - a.size().bytes
    const k = Math.ceil(filler / (MAX_RECORD_BYTES - 100))
    const len = Math.floor(filler / k) - 2 - 64
    expect(write(a, Array.from({ length: k }, (_, i): [Section, string, unknown] => [PINS, `f${i}`, 'z'.repeat(len)]))).toEqual({ applied: true })
    expect(a.size().bytes + own).toBeGreaterThan(MAX_DOC_BYTES)

    o.onLocalUpdate((u) => expect(a.applyRemote(u, 'o')).toEqual({ applied: true }))
    expect(o.setOwn(PLACEMENTS, big('second'))).toBe(true)
    expect(a.placements().get('o')?.placements[0]?.error?.startsWith('second')).toBe(true)
    expect(a.size().bytes).toBeLessThanOrEqual(MAX_DOC_BYTES)
  })

  it('refuses items outside a key of the three sections: another top-level name, a nested map, a section\'s list part', () => {
    const c = newDoc('c')
    const other = new Y.Doc()
    other.getMap('placements2').set('b', signedIn(PLACEMENTS, placements('b', ['m'])))
    expect(c.applyRemote(Y.encodeStateAsUpdate(other))).toEqual({ applied: false, reason: 'nested' })
    for (const section of [PLACEMENTS, PINS]) {
      const nested = new Y.Doc()
      nested.getMap(section).set('b', new Y.Map())
      expect(c.applyRemote(Y.encodeStateAsUpdate(nested))).toEqual({ applied: false, reason: 'nested' })
    }
    // the list part of a section's map: no entry holds it, so no view or bound would see it
    for (const section of [NODES, PLACEMENTS, PINS]) {
      const f = new Y.Doc()
      f.getArray(section).push(['x'.repeat(1000)])
      expect(c.applyRemote(Y.encodeStateAsUpdate(f))).toEqual({ applied: false, reason: 'nested' })
    }
    expect(c.rejected.get('nested')).toBe(6)
    expect(c.snapshot()).toEqual(newDoc('d').snapshot())
  })

  it('prunes a gone peer from every section, and takes a foreign delete in any section only where the rule allows deleting its node entry', () => {
    const a = newDoc('a')
    const b = newDoc('b')
    let allowed = false
    const asked: Array<{ key: string, last?: string, sender?: string }> = []
    const rule: PruneRule = (key, last, sender) => {
      asked.push({ key, ...(last != null ? { last: last.name } : {}), ...(sender != null ? { sender } : {}) })
      return allowed && key === 'a'
    }
    const c = newDoc('c', undefined, rule)
    writeAll(a, ['m'])
    for (const d of [b, c]) d.applyRemote(a.snapshot())

    // a delete of a's placements entry alone, sent by b: judged by a's node record
    const f = forger(c)
    f.doc.getMap(PLACEMENTS).delete('a')
    const onlyPlacements = Y.encodeStateAsUpdate(f.doc, f.since)
    expect(c.applyRemote(onlyPlacements, 'b')).toEqual({ applied: false, reason: 'foreign-delete' })
    expect(asked).toContainEqual({ key: 'a', last: 'a', sender: 'b' })
    expect(c.placements().has('a')).toBe(true)

    const deltas: Uint8Array[] = []
    b.onLocalUpdate((u) => deltas.push(u))
    expect(b.prune(['a'])).toBe(3)
    expect(shown(b)).toEqual({ nodes: [], placements: [], pins: [] })
    expect(c.applyRemote(deltas[0]!, 'b')).toEqual({ applied: false, reason: 'foreign-delete' })
    expect(shown(c)).toEqual({ nodes: [['a', ['m']]], placements: [['a', ['m']]], pins: [['a', ['m']]] })
    allowed = true
    expect(c.applyRemote(deltas[0]!, 'b')).toEqual({ applied: true })
    expect(shown(c)).toEqual({ nodes: [], placements: [], pins: [] })
    expect(c.keys()).toEqual([])
  })

  it('lists the keys of every section, so entries without a node record are pruned too', () => {
    const c = newDoc('c')
    expect(write(c, [[PINS, 'orphan', signedIn(PINS, pins('orphan', ['m']))], [NODES, 'n', signedIn(NODES, record('n'))]])).toEqual({ applied: true })
    expect(c.keys().sort()).toEqual(['n', 'orphan'])
    expect(c.prune(['orphan'])).toBe(1)
    expect(c.pins().size).toBe(0)
  })

  it('restores every section from a snapshot, and keeps checking them', () => {
    const a = newDoc('a')
    writeAll(a, ['m1', 'm2'])
    expect(write(a, [[PLACEMENTS, 'x', { ...signedIn(PLACEMENTS, placements('x', ['m'])), sig: 'forged' }]])).toEqual({ applied: true })
    const restored = newDoc('r', a.snapshot())
    expect(shown(restored)).toEqual(shown(a))
    expect(shown(restored)).toEqual({ nodes: [['a', ['m1', 'm2']]], placements: [['a', ['m1', 'm2']]], pins: [['a', ['m1', 'm2']]] })
    expect(restored.stats.invalidRecords.get('bad-signature')).toBe(1)
    expect(restored.size()).toEqual(a.size())

    // the owner restarted from its snapshot writes on from there
    const again = newDoc('a', a.snapshot())
    again.onLocalUpdate((u) => expect(restored.applyRemote(u, 'a')).toEqual({ applied: true }))
    expect(again.setOwn(PINS, pins('a', ['m3'], 2))).toBe(true)
    expect(restored.pins().get('a')?.pins.map((p) => p.model)).toEqual(['m3'])
  })

  it('rewrites its own placements and pins after a foreign overwrite or delete; meanwhile others do not show them', async () => {
    vi.useFakeTimers()
    const a = newDoc('a')
    const c = newDoc('c')
    a.onLocalUpdate((u) => c.applyRemote(u, 'a'))
    writeAll(a, ['mine'])
    c.applyRemote(a.snapshot())

    // over sync: a forged placements entry for a, and a's pins deleted
    const f = forger(a)
    f.doc.getMap(PLACEMENTS).set('a', { ...signedIn(PLACEMENTS, placements('a', ['evil'])), sig: 'forged' })
    f.doc.getMap(PINS).delete('a')
    const forged = Y.encodeStateAsUpdate(f.doc, f.since)
    expect(c.applyRemote(forged)).toEqual({ applied: true })
    // the decision: these sections keep no last valid entry (node records do)
    expect(c.placements().has('a')).toBe(false)
    expect(c.pins().has('a')).toBe(false)
    expect(c.get('a')?.models[0]?.name).toBe('mine')

    expect(a.applyRemote(forged)).toEqual({ applied: true })
    await vi.advanceTimersByTimeAsync(5)
    expect(a.stats.selfRewrites).toBe(2)
    for (const d of [a, c]) expect(shown(d)).toEqual({ nodes: [['a', ['mine']]], placements: [['a', ['mine']]], pins: [['a', ['mine']]] })
  })
})
