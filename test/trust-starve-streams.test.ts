/**
 * Nobody can starve an agent, on `/llmesh/infer/1` over real libp2p: a hostile peer built from
 * libp2p's own modules (`@llmesh/fixtures`) floods, stalls and never reads; a Mesh serves it
 * with small limits (so the bounds are reached in a test's time) and must cut each attack, free
 * what it held, count it, and keep serving an honest requester. On the requester side, a
 * hostile serving peer that says nothing (or a head and then nothing) fails the request with
 * STALLED within the silence bounds, while an honest one that takes longer but sends keepalives
 * does not. Outcomes and counters are asserted, never timings.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Stream } from '@libp2p/interface'
import { lpStream } from '@libp2p/utils'
import { pino } from 'pino'
import * as varint from 'uint8-varint'
import { FrameKind, INFER_PROTOCOL, encodeFrame, decodeFrame, type InferRequest } from '@llmesh/protocol'
import { ClusterDoc } from '@llmesh/state'
import { Mesh, peerIdOfKey, recordSigner, recordVerifier, serveInfer, type InferLimitsInit, type InferReply } from '@llmesh/mesh'
import { createHostilePeer, waitFor, type HostilePeer } from '@llmesh/fixtures'

const logger = pino({ level: 'silent' })
const CLUSTER = 'starve'
const meshes: Mesh[] = []
const hostiles: HostilePeer[] = []
afterEach(async () => {
  await Promise.all([...meshes.splice(0).map(async (m) => { await m.stop() }), ...hostiles.splice(0).map(async (h) => { await h.stop() })])
})

async function startMesh (inferLimits?: InferLimitsInit, bootstrap: string[] = []): Promise<Mesh> {
  const privateKey = await generateKeyPair('Ed25519')
  const mesh = new Mesh({
    clusterId: CLUSTER, privateKey, listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap, doc: new ClusterDoc(peerIdOfKey(privateKey), undefined, { verifier: recordVerifier(), signer: recordSigner(privateKey) }), logger,
    incarnation: Date.now(), metrics: () => ({ slotsBusy: 0, slotsTotal: 0, queueDepth: 0, tokensPerSec: 0, latencyMs: 0, successRate: 1, claims: {} }),
    ...(inferLimits != null ? { inferLimits } : {})
  })
  await mesh.start()
  meshes.push(mesh)
  return mesh
}

async function hostile (): Promise<HostilePeer> {
  const h = await createHostilePeer({ cluster: { id: CLUSTER } })
  hostiles.push(h)
  return h
}

const enc = (s: string): Uint8Array => new TextEncoder().encode(s)
const req = (model: string, id = 'r'): InferRequest => ({ id, path: '/v1/chat/completions', model, body: {} })

async function text (body: AsyncIterable<Uint8Array>): Promise<string> {
  let out = ''
  for await (const chunk of body) out += new TextDecoder().decode(chunk)
  return out
}

/** A serving Mesh whose handler answers `model:id`, or streams without end for model 'endless'. */
async function server (limits: InferLimitsInit, onServe?: (reply: InferReply) => void): Promise<Mesh> {
  const a = await startMesh(limits)
  await a.handle(INFER_PROTOCOL, async (stream, peer) => {
    await serveInfer(stream, async (request, reply) => {
      onServe?.(reply)
      await reply.head({ status: 200, contentType: 'text/plain', runnerId: 'r1' })
      if (request.model === 'endless') {
        const chunk = new Uint8Array(64 * 1024)
        while (!reply.signal.aborted) await reply.data(chunk)
        return
      }
      await reply.data(enc(`${request.model}:${request.id}`))
    }, { peer, limits: a.inferLimits })
  })
  return a
}

function closed (stream: Stream): boolean {
  return stream.status !== 'open'
}

describe('the serving side holds a hostile requester to its limits', () => {
  it('a flood of streams with 8 MiB partial frames is cut, counted and freed; an honest peer is still served', async () => {
    const a = await server({ maxStreamsPerPeer: 16, maxRequestBytesPerPeer: 4 * 1024 * 1024, requestReadTimeoutMs: 3000 })
    const h = await hostile()
    const addr = a.addrs()[0]!
    await h.dial(addr)
    const streams: Stream[] = []
    for (let i = 0; i < 24; i++) {
      try {
        streams.push((await h.open(addr, INFER_PROTOCOL)).stream)
      } catch {
        // a stream past the per-peer bound may be reset while its protocol is being negotiated
      }
    }
    // each stream announces a frame of 8 MiB, of which 512 KiB come, and then nothing
    for (const stream of streams) {
      if (closed(stream)) continue
      stream.send(varint.encode(8 * 1024 * 1024 - 1))
      stream.send(new Uint8Array(512 * 1024))
    }
    const refused = a.stats.inferRefused
    await waitFor('every flooding stream cut', () => streams.every(closed), 15_000)
    expect(refused['streams-per-peer']).toBeGreaterThan(0)
    expect(refused['request-bytes-per-peer']).toBeGreaterThan(0)
    // every stream let in was cut once: past the byte budget, or at the read bound
    expect(refused['request-bytes-per-peer'] + refused['request-read-timeout']).toBe(24 - refused['streams-per-peer'])
    await waitFor('the peer to hold nothing', () => {
      const u = a.inferLimits.usage(h.peerId)
      return u.streams === 0 && u.bytes === 0 && u.requests === 0
    }, 15_000)
    const b = await startMesh(undefined, [addr])
    await waitFor('B connected', () => b.connectedPeers().includes(a.peerId), 10_000)
    expect(await text((await b.infer(a.peerId, req('m', 'after-flood'))).body)).toBe('m:after-flood')
  })

  it('a stream that sends nothing, or a kept stream that starts a request and stops, is closed after the read bound', async () => {
    const a = await server({ requestReadTimeoutMs: 500, idleReadMs: 5000 })
    const h = await hostile()
    const silent = await h.open(a.addrs()[0]!, INFER_PROTOCOL)
    // a kept stream: one whole request answered, then half of the next one
    const kept = await h.open(a.addrs()[0]!, INFER_PROTOCOL)
    await kept.lp.write(encodeFrame(FrameKind.REQUEST, req('m', 'one')))
    const frames: number[] = []
    for (;;) {
      const f = decodeFrame((await kept.lp.read()).subarray())
      frames.push(f.kind)
      if (f.kind === FrameKind.END) break
    }
    expect(frames).toEqual([FrameKind.HEAD, FrameKind.DATA, FrameKind.END])
    kept.stream.send(varint.encode(1000))
    kept.stream.send(new Uint8Array(10))
    await waitFor('both streams closed', () => closed(silent.stream) && closed(kept.stream), 10_000)
    expect(a.stats.inferRefused['request-read-timeout']).toBe(2)
    expect(a.inferLimits.usage(h.peerId)).toEqual({ streams: 0, requests: 0, bytes: 0 })
  })

  it('requests beyond the per-peer bound are answered BUSY at once', async () => {
    let release!: () => void
    const gate = new Promise<void>((resolve) => { release = resolve })
    const a = await startMesh({ maxRequestsPerPeer: 2 })
    await a.handle(INFER_PROTOCOL, async (stream, peer) => {
      await serveInfer(stream, async (_request, reply) => {
        await gate
        await reply.head({ status: 200, contentType: 'text/plain', runnerId: 'r1' })
      }, { peer, limits: a.inferLimits })
    })
    const h = await hostile()
    const opened = await Promise.all([0, 1, 2].map(async () => await h.open(a.addrs()[0]!, INFER_PROTOCOL)))
    await opened[0]!.lp.write(encodeFrame(FrameKind.REQUEST, req('m', '0')))
    await opened[1]!.lp.write(encodeFrame(FrameKind.REQUEST, req('m', '1')))
    await waitFor('two requests in flight', () => a.inferLimits.usage(h.peerId).requests === 2, 5000)
    await opened[2]!.lp.write(encodeFrame(FrameKind.REQUEST, req('m', '2')))
    const answer = decodeFrame((await opened[2]!.lp.read()).subarray())
    expect(answer.kind).toBe(FrameKind.ERROR)
    expect(JSON.parse(new TextDecoder().decode(answer.payload))).toMatchObject({ code: 'BUSY' })
    expect(a.stats.inferRefused['requests-per-peer']).toBe(1)
    release()
  })

  it('a requester that never reads loses its answer after writeStallMs, and the work stops', async () => {
    const signals: InferReply['signal'][] = []
    const a = await server({ writeStallMs: 500 }, (reply) => { signals.push(reply.signal) })
    const h = await hostile()
    const { stream, lp } = await h.open(a.addrs()[0]!, INFER_PROTOCOL)
    await lp.write(encodeFrame(FrameKind.REQUEST, req('endless')))
    // never read: the stream grants the serving side no more window, which stays closed
    stream.pause()
    await waitFor('the answer abandoned', () => signals[0]?.aborted === true, 15_000)
    expect(a.stats.inferRefused['write-stall']).toBe(1)
    await waitFor('the stream gone', () => closed(stream), 5000)
    expect(a.inferLimits.usage(h.peerId)).toEqual({ streams: 0, requests: 0, bytes: 0 })
  })
})

describe('the requester bounds a silent serving peer', () => {
  const timeouts = { headMs: 500, gapMs: 500, firstTokenMs: 1500 }

  /** A hostile serving peer: reads each request and answers with `answer` (then nothing more). */
  async function silentServer (answer: (lp: { write: (d: Uint8Array) => Promise<void> }, stream: Stream) => Promise<void>): Promise<HostilePeer> {
    const h = await hostile()
    await h.node.handle(INFER_PROTOCOL, (stream) => {
      void (async () => {
        const lp = lpStream(stream)
        await lp.read()
        await answer(lp, stream)
      })().catch(() => {})
    })
    return h
  }

  async function requesterTo (h: HostilePeer): Promise<Mesh> {
    const b = await startMesh(undefined, [h.node.getMultiaddrs()[0]!.toString()])
    await waitFor('connected', () => b.connectedPeers().includes(h.peerId), 10_000)
    return b
  }

  it('a peer that accepts the request and says nothing fails it with STALLED', async () => {
    const h = await silentServer(async () => {})
    const b = await requesterTo(h)
    await expect(b.infer(h.peerId, req('m'), undefined, timeouts)).rejects.toMatchObject({ code: 'STALLED' })
  })

  it('a head and then nothing, or half a frame, fails the body with STALLED', async () => {
    for (const rest of ['nothing', 'partial'] as const) {
      const h = await silentServer(async (lp, stream) => {
        await lp.write(encodeFrame(FrameKind.HEAD, { status: 200, contentType: 'text/plain', runnerId: 'x' }))
        await lp.write(encodeFrame(FrameKind.DATA, enc('first')))
        if (rest === 'partial') stream.send(varint.encode(100))
      })
      const b = await requesterTo(h)
      const res = await b.infer(h.peerId, req('m'), undefined, timeouts)
      await expect(text(res.body)).rejects.toMatchObject({ code: 'STALLED' })
    }
  })

  it('keepalives without a token end at the first-token bound', async () => {
    const h = await silentServer(async (lp) => {
      for (let i = 0; i < 100; i++) {
        await lp.write(encodeFrame(FrameKind.KEEPALIVE))
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
    })
    const b = await requesterTo(h)
    await expect(b.infer(h.peerId, req('m'), undefined, timeouts)).rejects.toMatchObject({ code: 'STALLED', message: expect.stringContaining('no token') })
  })

  it('an honest peer that takes several silence bounds to answer is kept alive by its keepalives', async () => {
    const a = await startMesh()
    await a.handle(INFER_PROTOCOL, async (stream, peer) => {
      await serveInfer(stream, async (request, reply) => {
        await new Promise((resolve) => setTimeout(resolve, 1200)) // queued, then a slow prefill
        await reply.head({ status: 200, contentType: 'text/plain', runnerId: 'r1' })
        await new Promise((resolve) => setTimeout(resolve, 1200))
        await reply.data(enc(`${request.model}:${request.id}`))
      }, { peer, limits: a.inferLimits })
    })
    const b = await startMesh(undefined, a.addrs())
    await waitFor('connected', () => b.connectedPeers().includes(a.peerId), 10_000)
    const res = await b.infer(a.peerId, req('slow', 'k'), undefined, { headMs: 500, gapMs: 500, firstTokenMs: 10_000 })
    expect(await text(res.body)).toBe('slow:k')
  })
})
