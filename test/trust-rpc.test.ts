/**
 * The llama.cpp RPC tunnel against a hostile peer: a libp2p node built from libp2p's own
 * modules, holding the cluster's secret (a host of the cluster gone rogue), opens
 * `/llmesh/rpc/1` to a running agent. A header for a model the agent holds no blocks of for
 * that peer is refused (FORBIDDEN: only the coordinator its own placement names may reach an
 * rpc-server); a header that is not JSON, one of another shape and one over the size bound are
 * refused and the stream reset; none reaches an rpc-server, and the agent goes on serving. The
 * same peer, signing its own record and placements, names the agent a member of more splits than
 * a host takes: the agent starts MAX_SPLIT_PARTS rpc-servers, no more.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request } from 'undici'
import * as Y from 'yjs'
import { SYNC_PROTOCOL, type UnsignedNodeRecord, type UnsignedPlacementsEntry } from '@llmesh/protocol'
import { NODES, PLACEMENTS, entryContent, recordContent } from '@llmesh/state'
import { LOOPBACK_AGENT_ARGS, createHostilePeer, startAgentProcess, waitFor, type AgentProcess, type HostilePeer } from '@llmesh/fixtures'
import { MAX_RPC_TUNNEL_HEADER_BYTES, RPC_TUNNEL_PROTOCOL, recordSigner } from '@llmesh/mesh'
import { MAX_SPLIT_PARTS } from '@llmesh/agent'
import { modelInfo, unsignedRecord } from '@llmesh/testkit'

const llamaServer = process.env['LLMESH_TEST_LLAMA_SERVER']!
const model = process.env['LLMESH_TEST_MODEL']!

let dir: string
let agent: AgentProcess
let peer: HostilePeer

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'llmesh-trust-rpc-'))
  agent = await startAgentProcess({ name: 'member', dataDir: join(dir, 'a'), args: [...LOOPBACK_AGENT_ARGS, '--llama-server', llamaServer, '--model', `tiny=${model}`] })
  peer = await createHostilePeer({ cluster: { id: 'default' } })
}, 60_000)

afterAll(async () => {
  await peer?.stop()
  await agent?.stop(5000)
  await rm(dir, { recursive: true, force: true })
})

/** Opens a tunnel stream, writes `frame` as one length-prefixed message, reads the reply. */
async function ask (frame: Uint8Array): Promise<{ ok: boolean, code?: string, message?: string }> {
  const { lp } = await peer.open(agent.info.addrs[0]!, RPC_TUNNEL_PROTOCOL)
  await lp.write(frame)
  return JSON.parse(new TextDecoder().decode((await lp.read()).subarray())) as { ok: boolean, code?: string }
}

const json = (v: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(v))

async function stats (): Promise<{ rpcRefused: Record<string, number> }> {
  return await (await request(`${agent.info.api}/mesh/stats`)).body.json() as { rpcRefused: Record<string, number> }
}

describe('the RPC tunnel against a hostile cluster peer', () => {
  it('refuses a peer that is no coordinator of a split this host holds blocks of', async () => {
    for (const name of ['tiny', 'anything']) {
      const reply = await ask(json({ model: name }))
      expect(reply).toMatchObject({ ok: false, code: 'FORBIDDEN' })
    }
    expect((await stats()).rpcRefused['not-allowed']).toBeGreaterThanOrEqual(2)
  })

  it('refuses headers that are not one, and serves on', async () => {
    expect(await ask(new TextEncoder().encode('GET / HTTP/1.1'))).toMatchObject({ ok: false, code: 'INVALID_REQUEST' })
    expect(await ask(json({ model: 7, extra: 'x' }))).toMatchObject({ ok: false, code: 'INVALID_REQUEST' })
    expect(await ask(json({ model: 'x'.repeat(MAX_RPC_TUNNEL_HEADER_BYTES) }))).toMatchObject({ ok: false, code: 'INVALID_REQUEST' })
    expect((await stats()).rpcRefused['malformed-header']).toBeGreaterThanOrEqual(3)
    // the agent still serves its API and its model
    const res = await request(`${agent.info.api}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tiny', max_tokens: 2, messages: [{ role: 'user', content: 'hi' }] })
    })
    expect(res.statusCode).toBe(200)
    await res.body.dump()
    expect(await ask(json({ model: 'tiny' }))).toMatchObject({ ok: false, code: 'FORBIDDEN' })
  })
})

/** Writes `fn`'s entries into the agent's document over /llmesh/sync/1, as the peer that starts a sync. */
async function syncPush (fn: (doc: Y.Doc) => void): Promise<void> {
  const doc = new Y.Doc()
  fn(doc)
  const { stream, lp } = await peer.open(agent.info.addrs[0]!, SYNC_PROTOCOL)
  await lp.write(Y.encodeStateVector(new Y.Doc()))
  await lp.read()
  await lp.read()
  await lp.write(Y.encodeStateAsUpdate(doc))
  await stream.close().catch(() => {})
}

describe('split plans from a cluster peer', () => {
  it('hold at most MAX_SPLIT_PARTS rpc-servers on a host, however many name it', async () => {
    const sign = recordSigner(peer.privateKey)
    const models = Array.from({ length: MAX_SPLIT_PARTS + 2 }, (_, i) => modelInfo(`split-${i}`, { sizeBytes: 1024, layers: 2, bytesPerLayer: 256 }))
    const record: UnsignedNodeRecord = { ...unsignedRecord(peer.peerId, { models, split: { coordinator: true, member: true } }), startedAt: Date.now(), updatedAt: Date.now() }
    const hosts = [{ peerId: peer.peerId, layers: 1, bytes: 0 }, { peerId: agent.info.peerId, layers: 1, bytes: 0 }]
    const entry: UnsignedPlacementsEntry = {
      peerId: peer.peerId,
      placements: models.map((m) => ({ model: m.name, state: 'planned', reason: 'request', since: Date.now(), split: { coordinator: peer.peerId, hosts } })),
      updatedAt: Date.now()
    }
    await syncPush((doc) => {
      doc.getMap(NODES).set(peer.peerId, { ...record, sig: sign.sign(recordContent(record)) })
      doc.getMap(PLACEMENTS).set(peer.peerId, { ...entry, sig: sign.sign(entryContent(PLACEMENTS, entry)) })
    })
    const rpcServers = async (): Promise<number> => {
      const { runners } = await (await request(`${agent.info.api}/admin/runners`)).body.json() as { runners: Array<{ kind: string, state: string }> }
      return runners.filter((r) => r.kind === 'rpc-server' && r.state === 'ready').length
    }
    await waitFor(`${MAX_SPLIT_PARTS} rpc-servers for the peer's plans`, async () => await rpcServers() === MAX_SPLIT_PARTS, 30_000, 100)
    // rounds go by (every 500 ms): the other plans stay refused
    const seen = new Set<number>()
    const until = Date.now() + 2000
    while (Date.now() < until) seen.add(await rpcServers())
    expect([...seen]).toEqual([MAX_SPLIT_PARTS])
  })
})
