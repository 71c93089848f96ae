/**
 * Nobody can starve or steer an agent: two real agent processes on loopback and a hostile peer
 * built from libp2p's own modules (`@llmesh/fixtures`) that holds the cluster's secret (home
 * mode: any peer with the cluster id's derived secret connects).
 * - B adopts a local OpenAI-compatible server (its `mlx` option) serving model `bulk`; A has no
 *   model and routes to B. Both run with small `limits` so each bound is reached in a test's time.
 * - The hostile peer H publishes its own record (a ready runner of `bulk`, 4 slots) and sends A
 *   heartbeats that claim 1000 slots, 1e6 tokens/s and a million requests on B, and serves
 *   `/llmesh/infer/1` by reading each request and never answering.
 * Asserted: A holds H's figures to H's record and the ceilings and counts why; a request A routes
 * to H fails over to B and succeeds; a client that stops reading, and a peer that never reads,
 * lose their stream after writeStallMs and B's slot is free again; a flood of streams with
 * 8 MiB partial frames is cut and counted; both agents keep serving. Outcomes, not timings.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createServer, request as httpRequest, type IncomingMessage, type Server } from 'node:http'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { once } from 'node:events'
import { request } from 'undici'
import { lpStream } from '@libp2p/utils'
import type { Stream } from '@libp2p/interface'
import * as varint from 'uint8-varint'
import { FrameKind, INFER_PROTOCOL, METRICS_PROTOCOL, PROTOCOL_VERSION, decodeFrame, encodeFrame, stateTopic, type Heartbeat, type UnsignedNodeRecord } from '@llmesh/protocol'
import { ClusterDoc } from '@llmesh/state'
import { MAX_REPORTED_QUEUE_PER_RUNNER, MAX_REPORTED_TOKENS_PER_SEC, recordSigner, recordVerifier } from '@llmesh/mesh'
import { createHostilePeer, startAgentProcess, waitFor, LOOPBACK_AGENT_ARGS, type AgentProcess, type HostilePeer, waitForReadyRunner } from '@llmesh/fixtures'

const EVENT = `data: {"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"${'x'.repeat(16_000)}"},"finish_reason":null}]}\n\n`
const SHORT = ['Hello', ' from', ' B'].map((w) => `data: {"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"${w}"},"finish_reason":null}]}\n\n`).join('') + 'data: [DONE]\n\n'

let dir: string
let runner: Server
/** streams of answers the fake runner is writing now */
let runnerOpen = 0
let a: AgentProcess
let b: AgentProcess
let h: HostilePeer
let heartbeatTimer: NodeJS.Timeout | undefined
/** infer streams H accepted (and never answered) */
let silentStreams = 0

interface View { nodes: Array<{ peerId: string, connected: boolean, runners: Array<{ state: string }>, metrics: Heartbeat['metrics'] | null }> }
interface Stats { heartbeatClamps: Record<string, number>, heartbeatsRateLimited: number, inferRefused: Record<string, number> }
interface Admission { admission: Array<{ busy: number, granted: number }> }

async function getJson<T> (url: string): Promise<T> {
  return await (await request(url)).body.json() as T
}

/**
 * Publishes `record` as H's own entry of the cluster document, by gossip on the state topic, as
 * an agent publishes its own, signed with H's key (records must carry their owner's signature).
 */
function publishRecord (peer: HostilePeer, record: UnsignedNodeRecord, clusterId = 'default'): void {
  const doc = new ClusterDoc(peer.peerId, undefined, { verifier: recordVerifier(), signer: recordSigner(peer.privateKey) })
  const updates: Uint8Array[] = []
  doc.onLocalUpdate((u) => { updates.push(u) })
  doc.setSelf(record)
  for (const u of updates) void peer.node.services.pubsub.publish(stateTopic(clusterId), u).catch(() => {})
  doc.destroy()
}

function hostileRecord (peer: HostilePeer): UnsignedNodeRecord {
  return {
    peerId: peer.peerId, name: 'hostile', version: '0.1.0', protocol: PROTOCOL_VERSION, addrs: peer.node.getMultiaddrs().map((m) => m.toString()), api: '127.0.0.1:1',
    hardware: { cpus: 64, memBytes: 2 ** 40, platform: 'linux', arch: 'x64' },
    models: [{ name: 'bulk', sizeBytes: 1, digest: 'd', format: 'gguf' }],
    runners: [{ id: 'hostile-r', kind: 'mlx', model: 'bulk', state: 'ready', slots: 4 }],
    startedAt: Date.now(), updatedAt: Date.now()
  }
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'llmesh-starve-'))
  runner = createServer((req, res) => {
    if (req.url === '/health') return void res.end('{"status":"ok"}')
    if (req.url === '/v1/models') return void res.writeHead(200, { 'content-type': 'application/json' }).end('{"object":"list","data":[{"id":"bulk","object":"model"}]}')
    let body = ''
    req.on('data', (c: Buffer) => { body += c.toString() })
    req.on('end', () => {
      if (body.includes('hold')) return // no answer until the agent hangs up: the slot stays taken
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      if (!body.includes('endless')) return void res.end(SHORT)
      runnerOpen++
      res.on('close', () => { runnerOpen-- })
      void (async () => {
        // as fast as the socket takes it, until the agent hangs up
        while (!res.destroyed) {
          if (!res.write(EVENT)) await Promise.race([once(res, 'drain'), once(res, 'close')])
        }
      })()
    })
  })
  await new Promise<void>((resolve) => runner.listen(0, '127.0.0.1', resolve))
  const limits = { headTimeoutMs: 1000, frameGapMs: 1000, writeStallMs: 1000 }
  const cfgB = join(dir, 'b.json')
  await writeFile(cfgB, JSON.stringify({ limits, queue: { deadlineMs: 1500 }, mlx: { url: `http://127.0.0.1:${(runner.address() as { port: number }).port}`, model: 'bulk', slots: 2 } }))
  const cfgA = join(dir, 'a.json')
  await writeFile(cfgA, JSON.stringify({ limits }))
  b = await startAgentProcess({ name: 'host-b', dataDir: join(dir, 'b'), args: [...LOOPBACK_AGENT_ARGS, '--config', cfgB] })
  a = await startAgentProcess({ name: 'host-a', dataDir: join(dir, 'a'), args: [...LOOPBACK_AGENT_ARGS, '--config', cfgA, '--bootstrap', b.info.addrs[0]!] })
  await waitForReadyRunner(a, b)

  h = await createHostilePeer({ cluster: { id: 'default' } })
  await h.node.handle(INFER_PROTOCOL, (stream) => {
    silentStreams++
    void lpStream(stream).read().catch(() => {}) // the request is read; no answer ever comes
  })
  h.node.services.pubsub.subscribe(stateTopic('default'))
  await h.dial(a.info.addrs[0]!)
  await h.dial(b.info.addrs[0]!)
  // inflated self-reports, on the metrics stream an agent reads heartbeats from
  const metrics = await h.open(a.info.addrs[0]!, METRICS_PROTOCOL)
  let seq = 0
  const incarnation = Date.now()
  const beat = (): void => {
    const hb: Heartbeat = {
      v: 1, incarnation, seq: ++seq, status: 'alive', intervalMs: 60_000,
      metrics: { slotsBusy: 0, slotsTotal: 1000, queueDepth: 0, tokensPerSec: 1e6, latencyMs: 0.001, successRate: 1, claims: { [b.info.peerId]: 1_000_000 } }
    }
    void metrics.lp.write(new TextEncoder().encode(JSON.stringify(hb))).catch(() => {})
  }
  beat()
  heartbeatTimer = setInterval(beat, 300)
  await waitFor('A to hold H\'s record', async () => {
    publishRecord(h, hostileRecord(h))
    const nodeH = (await getJson<View>(`${a.info.api}/mesh/view`)).nodes.find((n) => n.peerId === h.peerId)
    return nodeH?.runners.length === 1 && nodeH.metrics != null
  }, 30_000, 300)
}, 180_000)

afterAll(async () => {
  clearInterval(heartbeatTimer)
  await h?.stop()
  await Promise.all([a?.stop(), b?.stop()])
  runner?.closeAllConnections()
  await new Promise((resolve) => runner?.close(resolve))
  await rm(dir, { recursive: true, force: true })
})

/** Sends on a raw stream as fast as its window allows; nothing once it is closed. */
async function push (s: Stream, data: Uint8Array): Promise<void> {
  if (s.status !== 'open' || s.send(data)) return
  await new Promise<void>((resolve) => {
    s.addEventListener('drain', () => { resolve() }, { once: true })
    s.addEventListener('close', () => { resolve() }, { once: true })
  })
}

async function chat (content: string): Promise<{ status: number, node: string, route: string, text: string }> {
  const res = await request(`${a.info.api}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'bulk', stream: true, messages: [{ role: 'user', content }] })
  })
  return { status: res.statusCode, node: String(res.headers['x-llmesh-node']), route: String(res.headers['x-llmesh-route']), text: await res.body.text() }
}

describe('a hostile peer holding the cluster secret', () => {
  it('has its self-reported figures held to its record and the ceilings, counted by reason', async () => {
    // (heartbeats that came before the record were held to no slots at all)
    const nodeH = await waitFor('a heartbeat of H read against its record', async () => {
      const n = (await getJson<View>(`${a.info.api}/mesh/view`)).nodes.find((x) => x.peerId === h.peerId)
      return n?.metrics?.slotsTotal === 4 ? n : undefined
    }, 10_000)
    expect(nodeH.metrics).toMatchObject({ slotsTotal: 4, tokensPerSec: MAX_REPORTED_TOKENS_PER_SEC, claims: { [b.info.peerId]: 2 + MAX_REPORTED_QUEUE_PER_RUNNER } })
    const stats = await getJson<Stats>(`${a.info.api}/mesh/stats`)
    for (const reason of ['slots-over-record', 'tokens-per-sec-over-ceiling', 'latency-under-floor', 'claim-over-capacity', 'interval-out-of-bounds']) {
      expect(stats.heartbeatClamps[reason], reason).toBeGreaterThan(0)
    }
  })

  it('drops heartbeats past the per-peer rate and counts them', async () => {
    const { lp } = await h.open(a.info.addrs[0]!, METRICS_PROTOCOL)
    const hb = (seq: number): Uint8Array => new TextEncoder().encode(JSON.stringify({ v: 1, incarnation: 1, seq, status: 'alive', metrics: {} }))
    for (let i = 0; i < 300; i++) await lp.write(hb(i))
    await waitFor('rate-limited heartbeats counted', async () => (await getJson<Stats>(`${a.info.api}/mesh/stats`)).heartbeatsRateLimited > 0, 10_000)
  })

  it('accepts routed requests and never answers: each fails over to B and succeeds', async () => {
    for (let i = 0; i < 3; i++) {
      const r = await chat(`hello ${i}`)
      expect(r.status).toBe(200)
      expect(r.node).toBe(b.info.peerId)
      expect(r.text).toBe(SHORT)
    }
    // the hostile peer was tried (its inflated speed ranked it first) and given up as stalled
    expect(silentStreams).toBeGreaterThan(0)
  })
})

describe('a client that stops reading holds its slot at most writeStallMs', () => {
  it('an HTTP client that never reads: its stream ends, B\'s slot and runner are freed', async () => {
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      const req = httpRequest(`${a.info.api}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-llmesh-strategy': 'least-loaded' } }, resolve)
      req.on('error', reject)
      req.end(JSON.stringify({ model: 'bulk', stream: true, messages: [{ role: 'user', content: 'endless' }] }))
    })
    res.pause()
    expect(res.headers['x-llmesh-node']).toBe(b.info.peerId)
    await waitFor('B\'s slot taken', async () => (await getJson<Admission>(`${b.info.api}/admin/admission`)).admission[0]?.busy === 1, 10_000)
    // the client still holds its socket and reads nothing: the agents must let go of the slot
    await waitFor('B\'s slot free again', async () => (await getJson<Admission>(`${b.info.api}/admin/admission`)).admission[0]?.busy === 0, 20_000)
    await waitFor('the runner\'s stream closed', () => runnerOpen === 0, 10_000)
    res.destroy()
  })

  it('a peer that sends a request and never reads: B counts a write stall and frees the slot', async () => {
    const before = (await getJson<Stats>(`${b.info.api}/mesh/stats`)).inferRefused['write-stall'] ?? 0
    const { stream, lp } = await h.open(b.info.addrs[0]!, INFER_PROTOCOL)
    await lp.write(encodeFrame(FrameKind.REQUEST, { id: 'never-reads', path: '/v1/chat/completions', model: 'bulk', body: { model: 'bulk', stream: true, messages: [{ role: 'user', content: 'endless' }] } }))
    stream.pause()
    await waitFor('B\'s slot taken', async () => (await getJson<Admission>(`${b.info.api}/admin/admission`)).admission[0]?.busy === 1, 10_000)
    await waitFor('write stall counted', async () => (await getJson<Stats>(`${b.info.api}/mesh/stats`)).inferRefused['write-stall'] > before, 20_000)
    await waitFor('B\'s slot free again', async () => (await getJson<Admission>(`${b.info.api}/admin/admission`)).admission[0]?.busy === 0, 10_000)
    expect(stream.status).not.toBe('open')
  })
})

describe('a peer-supplied deadline', () => {
  it('is capped at the serving host\'s own queue deadline', async () => {
    const request = (id: string, content: string, extra: object = {}): Uint8Array => encodeFrame(FrameKind.REQUEST, {
      id, path: '/v1/chat/completions', model: 'bulk', body: { model: 'bulk', stream: true, messages: [{ role: 'user', content }] }, ...extra
    })
    // both of B's slots taken by answers that do not come
    const holds = await Promise.all(['hold-1', 'hold-2'].map(async (id) => {
      const o = await h.open(b.info.addrs[0]!, INFER_PROTOCOL)
      await o.lp.write(request(id, 'hold'))
      return o
    }))
    try {
      await waitFor('B\'s slots taken', async () => (await getJson<Admission>(`${b.info.api}/admin/admission`)).admission[0]?.busy === 2, 10_000)
      // a day of queueing asked for; B allows 1.5 s (queue.deadlineMs) and answers when that is up
      const { lp } = await h.open(b.info.addrs[0]!, INFER_PROTOCOL)
      await lp.write(request('a-day', 'hello', { mayQueue: true, deadlineMs: 24 * 3600 * 1000 }))
      const answer = decodeFrame((await lp.read()).subarray())
      expect(answer.kind).toBe(FrameKind.ERROR)
      expect(JSON.parse(new TextDecoder().decode(answer.payload))).toMatchObject({ code: 'DEADLINE_EXCEEDED' })
    } finally {
      for (const o of holds) o.stream.abort(new Error('done'))
    }
    await waitFor('B\'s slots free again', async () => (await getJson<Admission>(`${b.info.api}/admin/admission`)).admission[0]?.busy === 0, 10_000)
  })
})

describe('a flood of infer streams with 8 MiB partial frames', () => {
  it('is cut and counted by A, which keeps serving', async () => {
    const before = (await getJson<Stats>(`${a.info.api}/mesh/stats`)).inferRefused
    const streams: Stream[] = []
    for (let i = 0; i < 40; i++) {
      try {
        streams.push((await h.open(a.info.addrs[0]!, INFER_PROTOCOL)).stream)
      } catch { /* reset while negotiating */ }
    }
    // 40 x 2 MiB of frames announced at 8 MiB: past the per-peer budget of request bytes
    const chunk = new Uint8Array(256 * 1024)
    await Promise.all(streams.map(async (s) => {
      await push(s, varint.encode(8 * 1024 * 1024 - 1))
      for (let k = 0; k < 8; k++) await push(s, chunk)
    }))
    await waitFor('every flooding stream cut', () => streams.every((s) => s.status !== 'open'), 30_000)
    const refused = (await getJson<Stats>(`${a.info.api}/mesh/stats`)).inferRefused
    // each one cut once: at the read bound, or past the per-peer budget of request bytes (what of
    // the 80 MiB gets through the streams' flow-control windows in that time varies)
    expect(refused['request-read-timeout'] + refused['request-bytes-per-peer'] - before['request-read-timeout']! - before['request-bytes-per-peer']!).toBe(streams.length)
    expect(streams.length).toBeGreaterThan(0)
    const r = await chat('still there?')
    expect(r.status).toBe(200)
    expect(r.text).toBe(SHORT)
  }, 60_000)
})
