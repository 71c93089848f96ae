/**
 * Fuzz (fast-check): random and hostile records, Yjs updates and sync messages through the real
 * handlers — ClusterDoc.applyRemote with and without a sender, and a real Mesh's sync stream and
 * gossip topic driven by a hostile libp2p peer in both directions. Holds: nothing throws out of
 * a handler (process-level listeners see no uncaught exception or rejection), and no record is
 * in a view that its owner did not sign. Prints the inputs per second.
 *
 * The document property starts every run from a fresh victim, with keys and Yjs client ids
 * drawn from the run's inputs, so a failure shrinks to a short sequence and the seed and path
 * fast-check reports replay it exactly (pass them to `fc.assert`).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import fc from 'fast-check'
import * as Y from 'yjs'
import { pino } from 'pino'
import { generateKeyPair, generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { lpStream } from '@libp2p/utils'
import { SYNC_PROTOCOL, stateTopic, type NodeRecord, type UnsignedNodeRecord } from '@llmesh/protocol'
import { ClusterDoc, MAX_DOC_BYTES, MAX_PENDING_BYTES, recordContent } from '@llmesh/state'
import { Mesh, recordSigner, recordVerifier } from './index.js'
import { createHostilePeer, waitFor, type HostilePeer } from '@llmesh/fixtures'

/** inputs per property: bounded so the file runs in a few seconds in CI */
const DOC_RUNS = 500
const SYNC_RUNS = 100
/** most hostile updates one document run applies to its victim in a row */
const DOC_STEPS = 4

const uncaught: unknown[] = []
const onUncaught = (err: unknown): void => { uncaught.push(err) }
beforeAll(() => {
  process.on('uncaughtException', onUncaught)
  process.on('unhandledRejection', onUncaught)
})
afterAll(() => {
  process.off('uncaughtException', onUncaught)
  process.off('unhandledRejection', onUncaught)
})

interface Signer { id: string, key: PrivateKey }

/** A signer with a fresh key, or with the key derived from `seed` (the same peer id in every test run). */
async function newSigner (seed?: number): Promise<Signer> {
  const key = seed == null ? await generateKeyPair('Ed25519') : await generateKeyPairFromSeed('Ed25519', new Uint8Array(32).fill(seed))
  return { id: peerIdFromPrivateKey(key).toString(), key }
}

function unsigned (id: string, n: number, addrs: string[] = [`/ip4/127.0.0.1/tcp/${4000 + n}/p2p/${id}`]): UnsignedNodeRecord {
  return {
    peerId: id, name: `host-${n}`, version: '0.1.0', protocol: 1, addrs, api: `127.0.0.1:${8000 + n}`,
    hardware: { cpus: 8, memBytes: 2 ** 34, platform: 'linux', arch: 'x64' },
    models: [{ name: `m${n}`, sizeBytes: 1000, digest: 'abc', format: 'gguf' }],
    runners: [{ id: `r${n}`, kind: 'llama-server', model: `m${n}`, state: 'ready', slots: 4 }],
    startedAt: 1, updatedAt: 1 + n
  }
}

/** Every signature really made, by whom, over what: the view may hold a record only under its signer's id, with that content. */
const legit = new Map<string, { signer: string, content: string }>()
function sign (s: Signer, r: UnsignedNodeRecord): NodeRecord {
  const content = recordContent(r)
  const sig = recordSigner(s.key).sign(content)
  legit.set(sig, { signer: s.id, content: Buffer.from(content).toString('base64') })
  return { ...r, sig }
}

/** The real signer, with every signature it makes recorded as legit (the owner's rewrites of its own entry re-sign). */
function ownSigner (s: Signer): ReturnType<typeof recordSigner> {
  const real = recordSigner(s.key)
  return {
    sign: (content) => {
      const sig = real.sign(content)
      legit.set(sig, { signer: s.id, content: Buffer.from(content).toString('base64') })
      return sig
    }
  }
}

/** Fails when a record in the doc's view was not signed by its owner over exactly that content. */
function assertNoForgery (doc: ClusterDoc): void {
  for (const r of doc.records()) {
    const signed = legit.get(r.sig)
    expect(signed?.signer, `record of ${r.peerId} in the view with a signature its owner never made`).toBe(r.peerId)
    expect(Buffer.from(recordContent(r)).toString('base64')).toBe(signed?.content)
  }
}

let honest: Signer[]
let attacker: Signer

beforeAll(async () => {
  honest = await Promise.all([newSigner(1), newSigner(2), newSigner(3)])
  attacker = await newSigner(4)
})

/** A raw Yjs client with the given id (drawn by fast-check, so a seed replays the same conflicts). */
function rawDoc (clientID: number): Y.Doc {
  const doc = new Y.Doc()
  doc.clientID = clientID
  return doc
}
const clientId = fc.integer({ min: 1, max: 0xffffffff })

/** Gives a generated builder a readable form in fast-check's counterexample report (built only when printed). */
function named<F extends object> (fn: F, text: () => string): F {
  return Object.assign(fn, { [fc.toStringMethod]: text })
}
/** A key as the report shows it: which peer's, or the junk key itself. */
function label (key: string): string {
  const i = honest.findIndex((s) => s.id === key)
  return i >= 0 ? `honest[${i}]` : key === attacker.id ? 'attacker' : JSON.stringify(key)
}

/** A hostile value for an entry. */
function hostileValue (): fc.Arbitrary<(base: NodeRecord[]) => unknown> {
  // a change that keeps the record well-formed, so only the signature can tell
  const change = fc.oneof(
    fc.string({ minLength: 1, maxLength: 20 }).map((name) => ({ name })),
    fc.nat().map((updatedAt) => ({ updatedAt })),
    fc.constant({ addrs: [] }),
    fc.integer({ min: 1, max: 256 }).map((slots) => ({ runners: [{ id: 'r', kind: 'llama-server', model: 'm', state: 'ready', slots }] })),
    fc.record({ name: fc.string({ minLength: 1, maxLength: 20 }), sizeBytes: fc.nat(), digest: fc.string() }).map((m) => ({ models: [{ ...m, format: 'gguf' }] }))
  )
  const field = fc.constantFrom('peerId', 'name', 'addrs', 'runners', 'models', 'hardware', 'updatedAt', 'sig', 'api')
  return fc.oneof(
    fc.anything().map((v) => named(() => v, () => fc.stringify(v))),
    // an owner's record changed after signing: well-formed (weighted: only the signature can tell), or any JSON in one field
    { arbitrary: fc.tuple(fc.nat(), change).map(([i, c]) => named((base: NodeRecord[]) => ({ ...base[i % base.length], ...c }), () => `{ ...record of honest[${i % honest.length}], ...${fc.stringify(c)} }`)), weight: 4 },
    fc.tuple(fc.nat(), field, fc.jsonValue()).map(([i, f, v]) => named((base: NodeRecord[]) => ({ ...base[i % base.length], [f]: v }), () => `{ ...record of honest[${i % honest.length}], ${f}: ${fc.stringify(v)} }`)),
    // a valid record under another peer's key
    fc.tuple(fc.nat(), fc.nat()).map(([i, j]) => named((base: NodeRecord[]) => ({ ...base[i % base.length], peerId: base[j % base.length]!.peerId }), () => `{ ...record of honest[${i % honest.length}], peerId: honest[${j % honest.length}] }`)),
    // the attacker signs a record for an honest peer's id, or for its own id with a bad address or inflated slots
    { arbitrary: fc.nat().map((i) => named(() => sign(attacker, unsigned(honest[i % honest.length]!.id, i)), () => `record for honest[${i % honest.length}] signed by the attacker`)), weight: 3 },
    fc.string().map((addr) => named(() => sign(attacker, unsigned(attacker.id, 9, [addr])), () => `attacker's record with address ${fc.stringify(addr)}`)),
    fc.integer({ min: 257, max: 1e9 }).map((slots) => named(() => sign(attacker, { ...unsigned(attacker.id, 9), runners: [{ id: 'r', kind: 'llama-server', model: 'm', state: 'ready', slots }] }), () => `attacker's record with ${slots} slots`)),
    // the attacker's own, valid record: allowed in the view (it did sign it)
    fc.nat({ max: 1000 }).map((n) => named(() => sign(attacker, { ...unsigned(attacker.id, 9), updatedAt: n }), () => `attacker's valid record, updatedAt ${n}`)),
    // oversized
    fc.integer({ min: 200_000, max: 400_000 }).map((n) => named(() => ({ ...unsigned(attacker.id, 9), name: 'x'.repeat(n), sig: '' }), () => `record with a ${n}-character name`))
  )
}

type Build = (victim: ClusterDoc, base: NodeRecord[]) => Uint8Array

/** A hostile Yjs update against the victim's current document. */
function hostileUpdate (): fc.Arbitrary<Build> {
  // a few junk keys besides the real ones: a document filling up with junk is the bounds' test, not this one's
  const key = fc.oneof({ arbitrary: fc.nat().map((i) => honest[i % honest.length]!.id), weight: 4 }, fc.constant('victim'), fc.constant(attacker.id),
    fc.constantFrom('', 'x', '__proto__', 'constructor', 'nodes'))
  const fromBase = fc.boolean()
  const write = fc.tuple(key, hostileValue(), fromBase, clientId).map(([k, value, based, client]) => named((victim: ClusterDoc, base: NodeRecord[]) => {
    const f = rawDoc(client)
    if (based) Y.applyUpdate(f, victim.snapshot())
    const sv = Y.encodeStateVector(f)
    f.getMap('nodes').set(k === 'victim' ? victim.peerId : k, value(base))
    return Y.encodeStateAsUpdate(f, sv)
  }, () => `client ${client} sets ${label(k)} to ${fc.stringify(value)}${based ? ' over the victim\'s document' : ''}`))
  const del = fc.tuple(key, clientId).map(([k, client]) => named((victim: ClusterDoc) => {
    const f = rawDoc(client)
    Y.applyUpdate(f, victim.snapshot())
    const sv = Y.encodeStateVector(f)
    f.getMap('nodes').delete(k === 'victim' ? victim.peerId : k)
    return Y.encodeStateAsUpdate(f, sv)
  }, () => `client ${client} deletes ${label(k)}`))
  const nested = fc.tuple(key, fc.constantFrom('map', 'text', 'array', 'root-text'), clientId).map(([k, kind, client]) => named(() => {
    const f = rawDoc(client)
    if (kind === 'root-text') f.getText('nodes-text').insert(0, 'x')
    else {
      const inner = kind === 'map' ? new Y.Map() : kind === 'text' ? new Y.Text('t') : new Y.Array()
      f.getMap('nodes').set(k, inner)
    }
    return Y.encodeStateAsUpdate(f)
  }, () => `client ${client} sets ${label(k)} to a nested ${kind}`))
  const random = fc.uint8Array({ maxLength: 512 }).map((bytes) => named(() => bytes, () => `bytes ${fc.stringify(bytes)}`))
  // a valid update with bytes flipped, cut short or spliced
  const mutated = fc.tuple(fc.oneof(write, del, nested), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }), fc.option(fc.nat()))
    .map(([build, flips, cut]) => named((victim: ClusterDoc, base: NodeRecord[]) => {
      const bytes = new Uint8Array(build(victim, base))
      for (const [at, v] of flips) if (bytes.length > 0) bytes[at % bytes.length] = v
      return cut != null && bytes.length > 0 ? bytes.subarray(0, cut % bytes.length) : bytes
    }, () => `${fc.stringify(build)}, bytes [at, value] set ${fc.stringify(flips)}${cut != null ? `, cut at ${cut}` : ''}`))
  return fc.oneof({ arbitrary: write, weight: 5 }, del, nested, random, { arbitrary: mutated, weight: 2 })
}

/** who an update claims to come from: nobody (sync), an honest peer, the attacker, the victim itself */
const senderOf = fc.option(fc.nat(4), { nil: undefined, freq: 2 })
function sender (i: number | undefined, victim: ClusterDoc): string | undefined {
  if (i == null) return undefined
  return i < 3 ? honest[i]!.id : i === 3 ? attacker.id : victim.peerId
}

describe('fuzz: hostile records and updates', () => {
  it('ClusterDoc.applyRemote: no throw, no forged record in the view, bounds hold', async () => {
    const me = await newSigner(5)
    const base = honest.map((s, i) => sign(s, unsigned(s.id, i)))
    /** the victim as every run starts: the honest peers' records came by gossip, its own is written */
    const newVictim = (): ClusterDoc => {
      const victim = new ClusterDoc(me.id, undefined, { verifier: recordVerifier(), signer: ownSigner(me) })
      victim.doc.clientID = 1
      for (const [i, r] of base.entries()) {
        const owner = rawDoc(2 + i)
        owner.getMap('nodes').set(r.peerId, r)
        expect(victim.applyRemote(Y.encodeStateAsUpdate(owner), r.peerId).applied).toBe(true)
      }
      victim.setSelf(unsigned(me.id, 7))
      return victim
    }
    let victim: ClusterDoc | undefined
    let inputs = 0
    const started = performance.now()
    fc.assert(fc.property(fc.array(fc.tuple(hostileUpdate(), senderOf), { minLength: 1, maxLength: DOC_STEPS }), (steps) => {
      victim?.destroy()
      const v = victim = newVictim()
      for (const [build, who] of steps) {
        inputs++
        let update: Uint8Array
        try {
          update = build(v, base)
        } catch {
          continue // the generator could not build it (e.g. a value Yjs refuses to encode): not an input
        }
        v.applyRemote(update, sender(who, v))
        assertNoForgery(v)
        expect(v.size().bytes).toBeLessThanOrEqual(MAX_DOC_BYTES + MAX_PENDING_BYTES)
        // nobody is pushed out of the view: a foreign delete or overwrite leaves the last valid record
        for (const s of [...honest, me]) expect(v.get(s.id), `record of ${s.id} gone from the view`).toBeDefined()
      }
    }), { numRuns: DOC_RUNS })
    const perSec = Math.round(inputs / ((performance.now() - started) / 1000))
    console.log(`fuzz ClusterDoc.applyRemote: ${inputs} inputs, ${perSec} inputs/s`)
    // the last victim's own entry, whatever the last run did to it, is its own record again once
    // a pending rewrite has run (at most SELF_REWRITE_MIN_INTERVAL_MS after the last attack)
    await new Promise((resolve) => setTimeout(resolve, 1200))
    const own = victim!.doc.getMap('nodes').get(me.id) as NodeRecord | undefined
    expect(own?.peerId).toBe(me.id)
    expect(legit.get(own!.sig)?.signer).toBe(me.id)
    assertNoForgery(victim!)
    victim!.destroy()
    expect(uncaught).toEqual([])
  }, 120_000)

  describe('a real Mesh, attacked over /llmesh/sync/1 and gossip by a hostile libp2p peer', () => {
    let mesh: Mesh
    let doc: ClusterDoc
    let peer: HostilePeer
    let addr: string
    /** what the hostile peer answers when the mesh syncs with it */
    let nextAnswer: Uint8Array = new Uint8Array()
    let answered = 0

    beforeAll(async () => {
      const me = await newSigner()
      doc = new ClusterDoc(me.id, undefined, { verifier: recordVerifier(), signer: ownSigner(me) })
      mesh = new Mesh({
        clusterId: 'fuzz', privateKey: me.key, listen: ['/ip4/127.0.0.1/tcp/0'], doc, logger: pino({ level: 'silent' }),
        incarnation: Date.now(), metrics: () => ({ slotsBusy: 0, slotsTotal: 1, queueDepth: 0, tokensPerSec: 0, latencyMs: 0, successRate: 1, claims: {} })
      })
      await mesh.start()
      doc.setSelf(unsigned(me.id, 5, mesh.addrs()))
      addr = mesh.addrs()[0]!
      peer = await createHostilePeer({ cluster: { id: 'fuzz' } })
      // the mesh syncs with every peer it identifies, and with a sender whose delta it cannot place:
      // answer each such sync with the next hostile update
      await peer.node.handle(SYNC_PROTOCOL, async (stream) => {
        const lp = lpStream(stream, { maxDataLength: 64 * 1024 * 1024 })
        try {
          await lp.read({ signal: AbortSignal.timeout(2000) })
          await lp.write(nextAnswer)
          await lp.write(nextAnswer.subarray(0, 8))
          await lp.read({ signal: AbortSignal.timeout(2000) })
          answered++
        } catch {} finally { stream.abort(new Error('done')) }
      })
      peer.node.services.pubsub.subscribe(stateTopic('fuzz'))
      await peer.dial(addr)
      await waitFor('the mesh in the hostile peer\'s gossip mesh', () => peer.node.services.pubsub.getSubscribers(stateTopic('fuzz')).length > 0, 10_000)
    }, 60_000)

    afterAll(async () => {
      await peer?.stop()
      await mesh?.stop()
    })

    it('sync requests, sync answers and gossip deltas: the mesh stays up, no forgery in its view', async () => {
      const base = honest.map((s, i) => sign(s, unsigned(s.id, i)))
      let inputs = 0
      const started = performance.now()
      await fc.assert(fc.asyncProperty(hostileUpdate(), fc.constantFrom('request', 'answer', 'gossip'), fc.oneof({ arbitrary: fc.constant(null), weight: 4 }, fc.uint8Array({ maxLength: 64 })), async (build, path, badSv) => {
        inputs++
        let update: Uint8Array
        try {
          update = build(doc, base)
        } catch {
          return
        }
        if (path === 'gossip') {
          await peer.node.services.pubsub.publish(stateTopic('fuzz'), update).catch(() => {})
        } else if (path === 'answer') {
          nextAnswer = update
          await mesh.sync(peer.peerId)
        } else {
          // the hostile peer starts the sync: its state vector (maybe garbage), then its update
          try {
            const { stream, lp } = await peer.open(addr, SYNC_PROTOCOL)
            await lp.write(badSv ?? Y.encodeStateVector(new Y.Doc()))
            await lp.read({ signal: AbortSignal.timeout(2000) })
            await lp.read({ signal: AbortSignal.timeout(2000) })
            await lp.write(update)
            await stream.close().catch(() => {})
          } catch {}
        }
        assertNoForgery(doc)
      }), { numRuns: SYNC_RUNS })
      const perSec = Math.round(inputs / ((performance.now() - started) / 1000))
      console.log(`fuzz Mesh sync + gossip: ${inputs} inputs, ${perSec} inputs/s (${answered} sync answers, ${mesh.stats.deltasReceived} deltas received)`)
      expect(mesh.stats.deltasReceived).toBeGreaterThan(0)
      expect(answered).toBeGreaterThan(0)
      // still serving: once its own entry is rewritten (at most SELF_REWRITE_MIN_INTERVAL_MS after
      // the last attack), an honest sync from the hostile peer's side gets the mesh's own record
      await new Promise((resolve) => setTimeout(resolve, 1200))
      const { stream, lp } = await peer.open(addr, SYNC_PROTOCOL)
      await lp.write(Y.encodeStateVector(new Y.Doc()))
      const full = new Y.Doc()
      Y.applyUpdate(full, (await lp.read()).subarray())
      await stream.close().catch(() => {})
      expect((full.getMap('nodes').get(mesh.peerId) as NodeRecord | undefined)?.peerId).toBe(mesh.peerId)
      expect(doc.get(mesh.peerId)).toBeDefined()
      assertNoForgery(doc)
      expect(uncaught).toEqual([])
    }, 180_000)
  })
})
