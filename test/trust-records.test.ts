/**
 * Peers cannot forge or crash: a hostile libp2p peer (built from libp2p's own modules, holding
 * the cluster's secret) attacks two real agents on loopback through the cluster document —
 * forged records, a key that is not a peer id, bad addresses, foreign writes and deletes over
 * gossip and over sync, a 28 MB document pushed by sync in chunks — and a poisoned snapshot is
 * left on disk for a third. The agents stay up, keep serving and routing (B serves the tiny model
 * on the embedded llama.cpp, A routes to it), their views hold no forgery, and /mesh/stats counts
 * what was refused.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request } from 'undici'
import * as Y from 'yjs'
import { SYNC_PROTOCOL, stateTopic, type NodeRecord, type PlacementsEntry, type UnsignedNodeRecord } from '@llmesh/protocol'
import { MAX_DOC_BYTES, PINS, PLACEMENTS, entryContent, recordContent } from '@llmesh/state'
import { recordSigner } from '@llmesh/mesh'
import { LOOPBACK_AGENT_ARGS, createHostilePeer, ensureTinyModel, startAgentProcess, waitFor, type AgentProcess, type HostilePeer, waitForReadyRunner } from '@llmesh/fixtures'

const TOPIC = stateTopic('default')

let dir: string
let a: AgentProcess
let b: AgentProcess
let h: HostilePeer
const agents: AgentProcess[] = []

interface ViewNode { peerId: string, name: string, connected: boolean, runners: Array<{ model: string, state: string }> }
interface PlacementView { placements: Array<{ peerId: string, model: string, state: string }>, pins: Array<{ model: string, host?: string }> }
interface Stats {
  docBytes: number
  rejectedUpdates: Record<string, number>
  invalidRecords: Record<string, number>
  selfRewrites: number
  keptAfterForeignChange: number
  handlerErrors: number
}

async function getJson<T> (url: string): Promise<T> {
  const res = await request(url)
  if (res.statusCode !== 200) throw new Error(`${url}: ${res.statusCode}`)
  return await res.body.json() as T
}
const view = async (x: AgentProcess): Promise<ViewNode[]> => (await getJson<{ nodes: ViewNode[] }>(`${x.info.api}/mesh/view`)).nodes
const stats = async (x: AgentProcess): Promise<Stats> => await getJson<Stats>(`${x.info.api}/mesh/stats`)

function unsigned (peerId: string, name: string, addrs: string[] = []): UnsignedNodeRecord {
  return {
    peerId, name, version: '0.1.0', protocol: 1, addrs, api: '127.0.0.1:9',
    hardware: { cpus: 64, memBytes: 2 ** 40, platform: 'linux', arch: 'x64' },
    models: [{ name: 'tiny', sizeBytes: 1, digest: 'd', format: 'gguf' }],
    runners: [{ id: 'evil', kind: 'llama-server', model: 'tiny', state: 'ready', slots: 256 }],
    startedAt: 1, updatedAt: Date.now()
  }
}

/** The hostile peer's copy of an agent's document, by the agent's own sync answer. */
async function fetchDoc (x: AgentProcess): Promise<Y.Doc> {
  const { stream, lp } = await h.open(x.info.addrs[0]!, SYNC_PROTOCOL)
  await lp.write(Y.encodeStateVector(new Y.Doc()))
  const doc = new Y.Doc()
  Y.applyUpdate(doc, (await lp.read()).subarray())
  await lp.read()
  await lp.write(new Uint8Array([0, 0]))
  await stream.close().catch(() => {})
  return doc
}

/**
 * Pushes `update` into an agent over /llmesh/sync/1, as the peer that starts a sync; `sv` is the
 * state vector it claims (what the agent answers with is read and dropped).
 */
async function syncPush (x: AgentProcess, update: Uint8Array, sv = Y.encodeStateVector(new Y.Doc())): Promise<void> {
  const { stream, lp } = await h.open(x.info.addrs[0]!, SYNC_PROTOCOL)
  await lp.write(sv)
  await lp.read()
  await lp.read()
  await lp.write(update)
  await stream.close().catch(() => {})
}

/** The name in `x`'s entry of `doc`, as stored, valid or not. */
function nameIn (doc: Y.Doc, x: AgentProcess): string | undefined {
  return (doc.getMap('nodes').get(x.info.peerId) as NodeRecord | undefined)?.name
}

/** A new Yjs client holding `x`'s document, that writes (`fn`) and returns what it wrote as an update. */
async function forge (x: AgentProcess, fn: (nodes: Y.Map<unknown>) => void): Promise<Uint8Array> {
  const doc = await fetchDoc(x)
  const sv = Y.encodeStateVector(doc)
  fn(doc.getMap('nodes'))
  return Y.encodeStateAsUpdate(doc, sv)
}

async function gossip (update: Uint8Array): Promise<void> {
  await h.node.services.pubsub.publish(TOPIC, update)
}

/** The request is routed to B and served by its runner. */
async function routedToB (): Promise<boolean> {
  const res = await request(`${a.info.api}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'tiny', max_tokens: 4, messages: [{ role: 'user', content: 'hi' }] })
  })
  await res.body.text()
  return res.statusCode === 200 && res.headers['x-llmesh-node'] === b.info.peerId
}

async function start (name: string, args: string[] = [], env?: NodeJS.ProcessEnv): Promise<AgentProcess> {
  const x = await startAgentProcess({ name, dataDir: join(dir, name), args: [...LOOPBACK_AGENT_ARGS, ...args], ...(env != null ? { env } : {}) })
  agents.push(x)
  return x
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'llmesh-trust-records-'))
  const model = await ensureTinyModel()
  // the embedded llama.cpp: no llama-server needed
  b = await start('host-b', ['--model', `tiny=${model}`], { LLMESH_LLAMA_SERVER: '', PATH: '/usr/bin:/bin' })
  a = await start('host-a', ['--bootstrap', b.info.addrs[0]!])
  await waitForReadyRunner(a, b, { model: 'tiny', timeoutMs: 90_000 })
  h = await createHostilePeer({ cluster: { id: 'default' } })
  h.node.services.pubsub.subscribe(TOPIC)
  await h.dial(a.info.addrs[0]!)
  await h.dial(b.info.addrs[0]!)
  await waitFor('both agents in the hostile peer\'s gossip', () => h.node.services.pubsub.getSubscribers(TOPIC).length === 2, 20_000)
}, 150_000)

afterAll(async () => {
  await h?.stop()
  await Promise.all(agents.map(async (x) => { await x.stop() }))
  await rm(dir, { recursive: true, force: true })
})

/** Both agents answer, A still routes to B, neither view holds anything but A and B as they signed them. */
async function stillServing (): Promise<void> {
  for (const x of [a, b]) {
    expect((await request(`${x.info.api}/health`)).statusCode).toBe(200)
    const nodes = await view(x)
    expect(nodes.map((n) => n.peerId).sort()).toEqual([a.info.peerId, b.info.peerId].sort())
    expect(nodes.find((n) => n.peerId === b.info.peerId)?.name).toBe('host-b')
    expect(nodes.find((n) => n.peerId === a.info.peerId)?.name).toBe('host-a')
  }
  await waitFor('a request routed to B', routedToB, 20_000)
}

describe('a hostile peer against the cluster document of running agents', () => {
  it('forged records (bad signature, key not a peer id, bad address) stay out of the views and are counted', async () => {
    const hSign = recordSigner(h.privateKey)
    const signedByH = (r: UnsignedNodeRecord): NodeRecord => ({ ...r, sig: hSign.sign(recordContent(r)) })
    // B's record rewritten by the hostile peer, keeping B's signature; and its own record with a signature over other content
    const forgedB = await forge(a, (nodes) => { nodes.set(b.info.peerId, { ...(nodes.get(b.info.peerId) as NodeRecord), name: 'evil-b', runners: [] }) })
    await syncPush(a, forgedB)
    await gossip(await forge(a, (nodes) => { nodes.set(h.peerId, { ...signedByH(unsigned(h.peerId, 'h')), name: 'changed' }) }))
    // a key that is not a peer id (a timer used to parse it and crash), an address that does not parse, one of another peer
    await syncPush(a, await forge(a, (nodes) => { nodes.set('not-a-peer-id', signedByH(unsigned('not-a-peer-id', 'x', ['/ip4/127.0.0.1/tcp/1']))) }))
    await gossip(await forge(a, (nodes) => { nodes.set(h.peerId, signedByH(unsigned(h.peerId, 'h', ['garbage', `/ip4/127.0.0.1/tcp/1/p2p/${b.info.peerId}`]))) }))

    await waitFor('A counts every forgery', async () => {
      const s = await stats(a)
      const ok = (s.invalidRecords['bad-signature'] ?? 0) >= 2 && (s.invalidRecords['bad-key'] ?? 0) >= 1 && (s.invalidRecords['bad-address'] ?? 0) >= 1
      if (!ok) throw new Error(JSON.stringify(s))
      return ok
    }, 10_000)
    await stillServing()
    expect((await stats(a)).handlerErrors).toBe(0)
  }, 60_000)

  it('a foreign write over gossip is refused; over sync the owner rewrites its entry at once', async () => {
    const before = await stats(a)
    await gossip(await forge(a, (nodes) => { nodes.set(b.info.peerId, { ...(nodes.get(b.info.peerId) as NodeRecord), name: 'evil-b' }) }))
    await waitFor('A refuses the foreign write', async () => ((await stats(a)).rejectedUpdates['foreign-entry'] ?? 0) > (before.rejectedUpdates['foreign-entry'] ?? 0), 10_000)

    // over sync, to B itself: B sees its own entry replaced and writes it again. The first test's
    // forgery reaches B through A and B's rewrite of it may still be due (rewrites are spaced by
    // SELF_REWRITE_MIN_INTERVAL_MS), so wait for the rewrite that puts B's name back.
    const rewritesBefore = (await stats(b)).selfRewrites
    await syncPush(b, await forge(b, (nodes) => { nodes.set(b.info.peerId, { ...(nodes.get(b.info.peerId) as NodeRecord), name: 'evil-b' }) }))
    await waitFor('B rewrites its entry', async () => (await stats(b)).selfRewrites > rewritesBefore && nameIn(await fetchDoc(b), b) === 'host-b', 10_000)
    await waitFor('the rewrite in A\'s document', async () => nameIn(await fetchDoc(a), b) === 'host-b', 10_000)
    await stillServing()
  }, 60_000)

  it('a foreign delete over gossip is refused; over sync the others keep the record and the owner writes it again', async () => {
    const before = await stats(a)
    await gossip(await forge(a, (nodes) => { nodes.delete(b.info.peerId) }))
    await waitFor('A refuses the foreign delete', async () => ((await stats(a)).rejectedUpdates['foreign-delete'] ?? 0) > (before.rejectedUpdates['foreign-delete'] ?? 0), 10_000)

    // over sync to A: B's entry gone from A's document, still in A's view
    await syncPush(a, await forge(a, (nodes) => { nodes.delete(b.info.peerId) }))
    await waitFor('A keeps B\'s record', async () => (await stats(a)).keptAfterForeignChange > before.keptAfterForeignChange, 10_000)
    expect((await view(a)).some((n) => n.peerId === b.info.peerId)).toBe(true)
    // over sync to B: B writes its entry again, and A's document has it back
    const rewrites = (await stats(b)).selfRewrites
    await syncPush(b, await forge(b, (nodes) => { nodes.delete(b.info.peerId) }))
    await waitFor('B rewrites its entry', async () => (await stats(b)).selfRewrites > rewrites, 10_000)
    await waitFor('B\'s entry back in A\'s document', async () => (await fetchDoc(a)).getMap('nodes').has(b.info.peerId), 10_000)
    await stillServing()
  }, 60_000)

  it('forged placements and pins stay out of the views: a foreign write is refused or rewritten, a signature of another section does not pass', async () => {
    const placementsOf = async (x: AgentProcess): Promise<PlacementView> => await getJson<PlacementView>(`${x.info.api}/mesh/view`)
    await waitFor('B\'s own placement of tiny in A\'s view', async () => (await placementsOf(a)).placements.some((p) => p.peerId === b.info.peerId && p.model === 'tiny'), 10_000)
    const before = await stats(a)
    const section = async (x: AgentProcess, name: string, fn: (m: Y.Map<unknown>) => void): Promise<Uint8Array> => {
      const doc = await fetchDoc(x)
      const sv = Y.encodeStateVector(doc)
      fn(doc.getMap(name))
      return Y.encodeStateAsUpdate(doc, sv)
    }
    // B's placements entry rewritten by the hostile peer over gossip (B's signature kept)
    await gossip(await section(a, PLACEMENTS, (m) => {
      const own = m.get(b.info.peerId) as PlacementsEntry
      m.set(b.info.peerId, { ...own, placements: [{ model: 'evil', state: 'ready', reason: 'request', since: 1 }] })
    }))
    await waitFor('A refuses the foreign placements write', async () => ((await stats(a)).rejectedUpdates['foreign-entry'] ?? 0) > (before.rejectedUpdates['foreign-entry'] ?? 0), 10_000)
    // its own pins entry, signed as if it were a node record, and its own placements entry signed as pins
    const hSign = recordSigner(h.privateKey)
    const pins = { peerId: h.peerId, pins: [{ model: 'evil-pin', pinned: true, at: Date.now() }], updatedAt: Date.now() }
    const placements = { peerId: h.peerId, placements: [{ model: 'evil-placed', state: 'ready', reason: 'request', since: 1 }], updatedAt: Date.now() }
    await gossip(await section(a, PINS, (m) => { m.set(h.peerId, { ...pins, sig: hSign.sign(entryContent('nodes', pins)) }) }))
    await gossip(await section(a, PLACEMENTS, (m) => { m.set(h.peerId, { ...placements, sig: hSign.sign(entryContent('pins', placements)) }) }))
    await waitFor('A counts both signatures as bad', async () => ((await stats(a)).invalidRecords['bad-signature'] ?? 0) >= (before.invalidRecords['bad-signature'] ?? 0) + 2, 10_000)
    // over sync to B: its placements entry replaced; B writes it again
    const rewrites = (await stats(b)).selfRewrites
    await syncPush(b, await section(b, PLACEMENTS, (m) => {
      const own = m.get(b.info.peerId) as PlacementsEntry
      m.set(b.info.peerId, { ...own, placements: [] })
    }))
    await waitFor('B rewrites its placements entry', async () => (await stats(b)).selfRewrites > rewrites, 10_000)
    for (const x of [a, b]) {
      await waitFor(`${x.name}'s view: B's placement back, nothing forged`, async () => {
        const v = await placementsOf(x)
        return v.placements.some((p) => p.peerId === b.info.peerId && p.model === 'tiny') && !v.placements.some((p) => p.model.startsWith('evil')) && !v.pins.some((p) => p.model.startsWith('evil'))
      }, 10_000)
    }
    await stillServing()
  }, 60_000)

  it('a 28 MB document pushed by sync in chunks is refused past the bound; a new host still joins', async () => {
    const chunkEntries = 28
    const value = 'x'.repeat(200_000)
    let pushed = 0
    // what A holds plus what was pushed: claimed as our state, A's answers stay small
    const known = await fetchDoc(a)
    for (let chunk = 0; chunk < 5; chunk++) {
      // one Yjs client per entry, as the one-entry-per-client rule wants
      const updates = Array.from({ length: chunkEntries }, (_, i) => {
        const c = new Y.Doc()
        c.getMap('nodes').set(`junk-${chunk}-${i}`, value)
        return Y.encodeStateAsUpdate(c)
      })
      const update = Y.mergeUpdates(updates)
      Y.applyUpdate(known, update)
      pushed += update.length
      await syncPush(a, update, Y.encodeStateVector(known)).catch(() => {})
    }
    expect(pushed).toBeGreaterThan(28_000_000)
    await waitFor('A refuses the growth', async () => ((await stats(a)).rejectedUpdates['doc-too-large'] ?? 0) >= 1, 10_000)
    const s = await stats(a)
    expect(s.docBytes).toBeLessThanOrEqual(MAX_DOC_BYTES)
    const rssKb = Number(/VmRSS:\s+(\d+)/.exec(await readFile(`/proc/${a.pid}/status`, 'utf8'))?.[1])
    console.log(`after a ${(pushed / 1e6).toFixed(1)} MB push: A's document ${(s.docBytes / 1e6).toFixed(2)} MB, RSS ${(rssKb / 1024).toFixed(0)} MiB`)

    // a new host joins through A and finishes its sync: it sees A and B
    const c = await start('host-c', ['--bootstrap', a.info.addrs[0]!])
    await waitFor('C sees A and B', async () => {
      const ids = (await view(c)).map((n) => n.peerId)
      return ids.includes(a.info.peerId) && ids.includes(b.info.peerId)
    }, 30_000)
    await waitFor('a request routed to B', routedToB, 20_000)
    expect((await request(`${a.info.api}/health`)).statusCode).toBe(200)
  }, 120_000)

  it('an agent starts on a poisoned snapshot and leaves its bad records out', async () => {
    const id = h.peerId
    const sign = (r: UnsignedNodeRecord): NodeRecord => ({ ...r, sig: recordSigner(h.privateKey).sign(recordContent(r)) })
    const poisoned = new Y.Doc()
    const nodes = poisoned.getMap('nodes')
    nodes.set(id, { ...sign(unsigned(id, 'p')), name: 'changed' })
    const other = new Y.Doc()
    other.getMap('nodes').set('not-a-peer-id', sign(unsigned('not-a-peer-id', 'p')))
    Y.applyUpdate(poisoned, Y.encodeStateAsUpdate(other))
    const third = new Y.Doc()
    third.getMap('nodes').set(id + 'x', sign(unsigned(id, 'p', ['not an address'])))
    Y.applyUpdate(poisoned, Y.encodeStateAsUpdate(third))
    await mkdir(join(dir, 'host-d'), { recursive: true })
    await writeFile(join(dir, 'host-d', 'cluster.snapshot'), Y.encodeStateAsUpdate(poisoned))

    const d = await start('host-d')
    expect((await request(`${d.info.api}/health`)).statusCode).toBe(200)
    expect((await view(d)).map((n) => n.peerId)).toEqual([d.info.peerId])
    const s = await stats(d)
    expect(s.invalidRecords).toEqual({ 'bad-signature': 1, 'bad-key': 1, 'key-mismatch': 1 })
  }, 60_000)
})
