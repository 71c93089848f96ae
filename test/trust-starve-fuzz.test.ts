/**
 * Fuzz (fast-check) of the starving and steering inputs through the real handlers: a hostile
 * libp2p peer (`@llmesh/fixtures`) sends random and hostile `/llmesh/infer/1` frames to a Mesh
 * serving with serveInfer and its per-peer limits, and random and hostile heartbeats on
 * `/llmesh/metrics/1`. Nothing may throw out of a handler (vitest fails the run on any
 * unhandled error), every heartbeat is accounted for (read, dropped or rate limited), the
 * figures kept are within their bounds, the peer holds nothing afterwards, and an honest
 * requester is still served. Prints inputs per second.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Stream } from '@libp2p/interface'
import { pino } from 'pino'
import * as varint from 'uint8-varint'
import { FrameKind, INFER_PROTOCOL, METRICS_PROTOCOL, encodeFrame } from '@llmesh/protocol'
import { ClusterDoc } from '@llmesh/state'
import { MAX_ANNOUNCED_INTERVAL_MS, MAX_REPORTED_TOKENS_PER_SEC, Mesh, peerIdOfKey, recordSigner, recordVerifier, serveInfer } from '@llmesh/mesh'
import { createHostilePeer, waitFor, type HostilePeer } from '@llmesh/fixtures'

const CLUSTER = 'fuzz'
const INFER_RUNS = Number(process.env['LLMESH_FUZZ_RUNS'] ?? 150)
const HEARTBEAT_RUNS = Number(process.env['LLMESH_FUZZ_RUNS'] ?? 150)

let a: Mesh
let b: Mesh
let h: HostilePeer
let served = 0

async function startMesh (bootstrap: string[] = []): Promise<Mesh> {
  const privateKey = await generateKeyPair('Ed25519')
  const mesh = new Mesh({
    clusterId: CLUSTER, privateKey, listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap, doc: new ClusterDoc(peerIdOfKey(privateKey), undefined, { verifier: recordVerifier(), signer: recordSigner(privateKey) }), logger: pino({ level: 'silent' }),
    incarnation: Date.now(), metrics: () => ({ slotsBusy: 0, slotsTotal: 0, queueDepth: 0, tokensPerSec: 0, latencyMs: 0, successRate: 1, claims: {} }),
    inferLimits: { requestReadTimeoutMs: 300, idleReadMs: 1000, writeStallMs: 300, maxRequestBytesPerPeer: 2 * 1024 * 1024 }
  })
  await mesh.start()
  return mesh
}

beforeAll(async () => {
  a = await startMesh()
  await a.handle(INFER_PROTOCOL, async (stream, peer) => {
    await serveInfer(stream, async (request, reply) => {
      served++
      await reply.head({ status: 200, contentType: 'text/plain', runnerId: 'r' })
      await reply.data(new TextEncoder().encode(`${request.model}:${request.id}`))
    }, { peer, limits: a.inferLimits })
  })
  h = await createHostilePeer({ cluster: { id: CLUSTER } })
  await h.dial(a.addrs()[0]!)
})

afterAll(async () => {
  await h?.stop()
  await Promise.all([a?.stop(), b?.stop()])
})

const hostileNumber = fc.oneof(fc.double(), fc.integer(), fc.constantFrom(0, -1, 1e308, Number.MAX_SAFE_INTEGER, 2 ** 53 + 1), fc.constant(null), fc.string({ maxLength: 8 }))

const bigInt = fc.oneof(fc.nat(), fc.constantFrom(0, 2 ** 31, 2 ** 40, Number.MAX_SAFE_INTEGER))
const bigDouble = fc.oneof(fc.double({ min: 0, max: 1e308, noNaN: true }), fc.constantFrom(0, 1e-300, 1e6, 1e308))

/** A REQUEST the schema takes, with the most hostile values it leaves room for. */
const validRequest = fc.record({
  id: fc.string({ maxLength: 128 }),
  path: fc.constantFrom('/v1/chat/completions', '/v1/completions', '/v1/embeddings'),
  model: fc.string({ minLength: 1, maxLength: 256 }),
  body: fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 3 })),
  priority: fc.option(fc.integer({ min: 0, max: 10 }), { nil: undefined }),
  mayQueue: fc.option(fc.boolean(), { nil: undefined }),
  deadlineMs: fc.option(fc.integer({ min: 0, max: 24 * 3600 * 1000 }), { nil: undefined }),
  keepaliveMs: fc.option(fc.integer({ min: 1, max: 3600 * 1000 }), { nil: undefined })
}, { requiredKeys: ['id', 'path', 'model', 'body'] })

/** A REQUEST payload off the schema: wrong types and values anywhere. */
const requestJson = fc.record({
  id: fc.oneof(fc.string({ maxLength: 200 }), hostileNumber),
  path: fc.oneof(fc.constantFrom('/v1/chat/completions', '/v1/completions', '/v1/embeddings'), fc.string({ maxLength: 20 })),
  model: fc.oneof(fc.string({ minLength: 1, maxLength: 40 }), hostileNumber),
  body: fc.oneof(fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 3 })), fc.jsonValue({ maxDepth: 2 })),
  priority: fc.option(hostileNumber),
  mayQueue: fc.option(fc.oneof(fc.boolean(), hostileNumber)),
  deadlineMs: fc.option(hostileNumber),
  keepaliveMs: fc.option(hostileNumber)
}, { requiredKeys: [] })

/** One thing written on an infer stream. */
const piece = fc.oneof(
  { weight: 3, arbitrary: validRequest.map((r) => encodeFrame(FrameKind.REQUEST, r)) },
  requestJson.map((r) => encodeFrame(FrameKind.REQUEST, r)),
  fc.tuple(fc.integer({ min: 0, max: 255 }), fc.uint8Array({ maxLength: 256 })).map(([kind, payload]) => { const f = new Uint8Array(1 + payload.length); f[0] = kind; f.set(payload, 1); return f }),
  fc.constantFrom(encodeFrame(FrameKind.KEEPALIVE), encodeFrame(FrameKind.END), encodeFrame(FrameKind.DATA, new Uint8Array(3)), new Uint8Array(0))
)
/** How the hostile side writes and leaves: whole frames, a frame cut short, raw bytes; close, reset or just go. */
const session = fc.record({
  frames: fc.array(piece, { maxLength: 4 }),
  tail: fc.oneof(fc.constant(undefined), fc.uint8Array({ minLength: 1, maxLength: 64 }), fc.integer({ min: 1, max: 8 * 1024 * 1024 + 10 }).map((n) => varint.encode(n))),
  end: fc.constantFrom('close', 'abort', 'leave')
})

describe('fuzz: hostile infer frames and heartbeats through the real handlers', () => {
  it('infer frames: no crash, every stream released, the peer holds nothing after', async () => {
    const started = performance.now()
    let inputs = 0
    /** streams the hostile side left open: the agent closes them at its idle bound, but the
     * hostile node's own libp2p allows it only 64 outbound streams, so the oldest go first */
    const left: Stream[] = []
    await fc.assert(fc.asyncProperty(session, async (s) => {
      inputs++
      for (let i = left.length - 1; i >= 0; i--) if (left[i]!.status !== 'open') left.splice(i, 1)
      while (left.length >= 48) left.shift()!.abort(new Error('fuzz: oldest left stream'))
      const { stream, lp } = await h.open(a.addrs()[0]!, INFER_PROTOCOL)
      if (s.end === 'leave') left.push(stream)
      try {
        for (const f of s.frames) await lp.write(f)
        if (s.tail != null) stream.send(s.tail)
        if (s.end === 'close') await stream.close()
        else if (s.end === 'abort') stream.abort(new Error('fuzz'))
      } catch { /* the agent may cut the stream first: that is its right */ }
    }), { numRuns: INFER_RUNS, seed: Number(process.env['LLMESH_FUZZ_SEED'] ?? 16) })
    const secs = (performance.now() - started) / 1000
    console.log(`infer fuzz: ${inputs} inputs in ${secs.toFixed(1)} s, ${(inputs / secs).toFixed(0)} inputs/s; served ${served}; refused ${JSON.stringify(a.stats.inferRefused)}`)
    await waitFor('the hostile peer to hold nothing', () => {
      const u = a.inferLimits.usage(h.peerId)
      return u.streams === 0 && u.requests === 0 && u.bytes === 0
    }, 20_000)
  }, 120_000)

  it('heartbeats: no crash, each accounted for, kept figures within bounds', async () => {
    const { lp } = await h.open(a.addrs()[0]!, METRICS_PROTOCOL)
    const before = { ...a.stats }
    let seq = 0
    const incarnation = Date.now()
    const valid = fc.record({
      v: fc.constant(1 as const),
      incarnation: fc.constant(incarnation),
      seq: fc.constant(0).map(() => ++seq),
      status: fc.constantFrom('alive' as const),
      intervalMs: fc.option(fc.integer({ min: 1, max: 60_000 }), { nil: undefined }),
      metrics: fc.record({
        slotsBusy: bigInt, slotsTotal: bigInt, queueDepth: bigInt, tokensPerSec: bigDouble, latencyMs: bigDouble,
        successRate: fc.double({ min: 0, max: 1, noNaN: true }), claims: fc.dictionary(fc.string({ maxLength: 128 }), bigInt, { maxKeys: 5 }),
        latencyDev: fc.option(bigDouble, { nil: undefined }), tokensPerSecDev: fc.option(bigDouble, { nil: undefined })
      }, { requiredKeys: [] })
    }, { requiredKeys: ['v', 'incarnation', 'seq', 'status', 'metrics'] })
    const heartbeat = fc.record({
      v: fc.oneof(fc.constant(1), hostileNumber),
      incarnation: fc.oneof(fc.constant(Date.now()), hostileNumber),
      seq: fc.oneof(fc.nat(), hostileNumber),
      status: fc.oneof(fc.constant('alive'), fc.string({ maxLength: 6 })),
      intervalMs: fc.option(fc.oneof(fc.integer({ min: 1, max: 60_000 }), hostileNumber)),
      metrics: fc.record({
        slotsBusy: hostileNumber, slotsTotal: hostileNumber, queueDepth: hostileNumber, tokensPerSec: hostileNumber, latencyMs: hostileNumber,
        successRate: hostileNumber, claims: fc.dictionary(fc.string({ maxLength: 60 }), hostileNumber, { maxKeys: 5 })
      }, { requiredKeys: [] })
    }, { requiredKeys: [] })
    const input = fc.oneof(
      { weight: 6, arbitrary: valid.map((x) => new TextEncoder().encode(JSON.stringify(x))) },
      { weight: 2, arbitrary: heartbeat.map((x) => new TextEncoder().encode(JSON.stringify(x))) },
      { weight: 1, arbitrary: fc.uint8Array({ maxLength: 512 }) }
    )
    const started = performance.now()
    let sent = 0
    await fc.assert(fc.asyncProperty(input, async (bytes) => {
      sent++
      await lp.write(bytes)
      // under the per-peer rate, so that most reach the parser and the bounds
      await new Promise((resolve) => setTimeout(resolve, 25))
    }), { numRuns: HEARTBEAT_RUNS, seed: Number(process.env['LLMESH_FUZZ_SEED'] ?? 16) })
    const secs = (performance.now() - started) / 1000
    const accounted = (): number => (a.stats.heartbeatsReceived - before.heartbeatsReceived) + (a.stats.heartbeatsDropped - before.heartbeatsDropped) +
      (a.stats.heartbeatsRateLimited - before.heartbeatsRateLimited)
    await waitFor('every heartbeat accounted for', () => accounted() === sent, 10_000)
    console.log(`heartbeat fuzz: ${sent} inputs in ${secs.toFixed(1)} s, ${(sent / secs).toFixed(0)} inputs/s (paced under the rate limit); read ${a.stats.heartbeatsReceived - before.heartbeatsReceived}, clamps ${JSON.stringify(a.stats.heartbeatClamps)}`)
    const m = a.membership.get(h.peerId)
    if (m != null) {
      // the hostile peer has no record: no slots, and speed and period within their bounds
      expect(m.metrics.slotsTotal).toBe(0)
      expect(m.metrics.tokensPerSec).toBeLessThanOrEqual(MAX_REPORTED_TOKENS_PER_SEC)
      expect(m.scale).toBeLessThanOrEqual(MAX_ANNOUNCED_INTERVAL_MS / 500)
      expect(Object.keys(m.metrics.claims)).toEqual([])
    }
  }, 120_000)

  it('the mesh still serves an honest requester', async () => {
    b = await startMesh(a.addrs())
    await waitFor('connected', () => b.connectedPeers().includes(a.peerId), 10_000)
    const res = await b.infer(a.peerId, { id: 'honest', path: '/v1/chat/completions', model: 'm', body: {} })
    let text = ''
    for await (const chunk of res.body) text += new TextDecoder().decode(chunk)
    expect(text).toBe('m:honest')
  })
})
