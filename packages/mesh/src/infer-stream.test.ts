import { afterEach, describe, expect, it } from 'vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import type { Stream } from '@libp2p/interface'
import { pino } from 'pino'
import { BusyError, FrameKind, INFER_PROTOCOL, LlmeshError, QueueFullError, encodeFrame, type InferRequest } from '@llmesh/protocol'
import { Abort } from '@llmesh/kit'
import { ClusterDoc } from '@llmesh/state'
import { recordSigner, recordVerifier } from './record-trust.js'
import { Mesh } from './mesh.js'
import { InferStreams, requestInfer, serveInfer, type InferReply } from './infer-stream.js'

const logger = pino({ level: 'silent' })
const started: Mesh[] = []
afterEach(async () => { await Promise.all(started.splice(0).map(async (m) => { await m.stop() })) })

async function until (cond: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

async function startMesh (bootstrap: string[] = []): Promise<Mesh> {
  const privateKey = await generateKeyPair('Ed25519')
  const mesh = new Mesh({
    clusterId: 'test', privateKey, listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap, doc: new ClusterDoc(peerIdFromPrivateKey(privateKey).toString(), undefined, { verifier: recordVerifier(), signer: recordSigner(privateKey) }), logger,
    incarnation: Date.now(), metrics: () => ({ slotsBusy: 0, slotsTotal: 1, queueDepth: 0, tokensPerSec: 0, latencyMs: 0, successRate: 1, claims: {} })
  })
  await mesh.start()
  started.push(mesh)
  return mesh
}

const req = (model: string, id = 'r'): InferRequest => ({ id, path: '/v1/chat/completions', model, body: {} })
const enc = (s: string): Uint8Array => new TextEncoder().encode(s)

async function text (body: AsyncIterable<Uint8Array>): Promise<string> {
  let out = ''
  for await (const chunk of body) out += new TextDecoder().decode(chunk)
  return out
}

/**
 * A (serving) and B (requesting), connected. A serves `/llmesh/infer/1` with `onRequest` and
 * records each inbound stream and each request's abort signal.
 */
async function pair (onRequest: (request: InferRequest, reply: InferReply) => Promise<void>): Promise<{ a: Mesh, b: Mesh, streams: Stream[], signals: AbortSignal[] }> {
  const a = await startMesh()
  const b = await startMesh(a.addrs())
  const streams: Stream[] = []
  const signals: AbortSignal[] = []
  await a.handle(INFER_PROTOCOL, async (stream) => {
    streams.push(stream)
    await serveInfer(stream, async (request, reply) => {
      signals.push(reply.signal)
      await onRequest(request, reply)
    })
  })
  await until(() => b.connectedPeers().includes(a.peerId))
  return { a, b, streams, signals }
}

const echo = async (request: InferRequest, reply: InferReply): Promise<void> => {
  if (request.model === 'missing') throw new LlmeshError('MODEL_NOT_FOUND', 'no such model here')
  if (request.model === 'full') throw new BusyError('all slots busy', request.id === 'figures' ? { slotsBusy: 4, slotsTotal: 4, queueDepth: 2 } : undefined)
  if (request.model === 'queue') throw new QueueFullError('the queue is full', 7)
  await reply.head({ status: 200, contentType: 'text/plain', runnerId: 'r1' })
  await reply.data(enc(`${request.model}:`))
  await reply.data(enc(request.id))
}

describe('/llmesh/infer/1 stream reuse', () => {
  it('carries sequential requests, answers and errors on one stream', async () => {
    const { a, b, streams } = await pair(echo)
    for (let i = 0; i < 5; i++) {
      const res = await b.infer(a.peerId, req('m', String(i)))
      expect(res.head).toEqual({ status: 200, contentType: 'text/plain', runnerId: 'r1' })
      expect(await text(res.body)).toBe(`m:${i}`)
    }
    // an error before the head leaves the stream usable too: a failover costs no new stream
    await expect(b.infer(a.peerId, req('missing'))).rejects.toMatchObject({ code: 'MODEL_NOT_FOUND', message: 'no such model here' })
    expect(await text((await b.infer(a.peerId, req('m', 'after'))).body)).toBe('m:after')
    expect(streams).toHaveLength(1)
  })

  it('carries a busy answer\'s admission figures to the requester, and none when there are none', async () => {
    const { a, b } = await pair(echo)
    const err = await b.infer(a.peerId, req('full', 'figures')).then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(BusyError)
    expect(err).toMatchObject({ code: 'BUSY', message: 'all slots busy', admission: { slotsBusy: 4, slotsTotal: 4, queueDepth: 2 } })
    const bare = await b.infer(a.peerId, req('full', 'plain')).then(() => undefined, (e: unknown) => e)
    expect(bare).toBeInstanceOf(BusyError)
    expect((bare as BusyError).admission).toBeUndefined()
  })

  it('carries a full queue\'s Retry-After to the requester', async () => {
    const { a, b } = await pair(echo)
    const err = await b.infer(a.peerId, req('queue')).then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(QueueFullError)
    expect(err).toMatchObject({ code: 'QUEUE_FULL', message: 'the queue is full', retryAfterSec: 7 })
  })

  it('opens a stream per concurrent request and keeps them for later ones', async () => {
    let release!: () => void
    const gate = new Promise<void>((resolve) => { release = resolve })
    const { a, b, streams } = await pair(async (request, reply) => {
      await gate
      await echo(request, reply)
    })
    const pending = [0, 1, 2].map(async (i) => await text((await b.infer(a.peerId, req('m', String(i)))).body))
    await until(() => streams.length === 3)
    release()
    expect(await Promise.all(pending)).toEqual(['m:0', 'm:1', 'm:2'])
    const again = await Promise.all([3, 4, 5].map(async (i) => await text((await b.infer(a.peerId, req('m', String(i)))).body)))
    expect(again).toEqual(['m:3', 'm:4', 'm:5'])
    expect(streams).toHaveLength(3)
  })

  it('aborts the peer\'s work when the requester leaves mid-body, and does not reuse that stream', async () => {
    const { a, b, streams, signals } = await pair(async (request, reply) => {
      await reply.head({ status: 200, contentType: 'text/plain', runnerId: 'r1' })
      await reply.data(enc('first'))
      if (request.model === 'endless') await new Promise((resolve) => reply.signal.addEventListener('abort', resolve))
    })
    const res = await b.infer(a.peerId, req('endless'))
    for await (const chunk of res.body) {
      expect(new TextDecoder().decode(chunk)).toBe('first')
      break // the client went away
    }
    await until(() => signals[0]?.aborted === true)
    expect(await text((await b.infer(a.peerId, req('m'))).body)).toBe('first')
    expect(streams).toHaveLength(2)
  })

  it('aborts the peer\'s work when the request\'s signal fires before the head', async () => {
    const { a, b, signals } = await pair(async (_request, reply) => {
      await new Promise((resolve) => reply.signal.addEventListener('abort', resolve))
    })
    const ac = new AbortController()
    const pending = b.infer(a.peerId, req('slow'), ac.signal)
    await until(() => signals.length === 1)
    ac.abort(new Error('client went away'))
    await expect(pending).rejects.toThrow()
    await until(() => signals[0]?.aborted === true)
  })

  it('aborts the peer\'s work and fails the body when the request\'s signal (an Abort) fires mid-body', async () => {
    const { a, b, signals } = await pair(async (_request, reply) => {
      await reply.head({ status: 200, contentType: 'text/plain', runnerId: 'r1' })
      await reply.data(enc('first'))
      await new Promise((resolve) => reply.signal.addEventListener('abort', resolve))
    })
    const abort = new Abort()
    const res = await b.infer(a.peerId, req('endless'), abort)
    const it = res.body[Symbol.asyncIterator]()
    expect(new TextDecoder().decode((await it.next()).value)).toBe('first')
    const next = it.next()
    abort.abort(new Error('client went away'))
    await expect(next).rejects.toThrow()
    await until(() => signals[0]?.aborted === true)
  })

  it('uses a stream per request with a peer that closes after each answer (no keepAlive)', async () => {
    const a = await startMesh()
    const b = await startMesh(a.addrs())
    let opened = 0
    // what a peer without stream reuse does: one answer, then close
    await a.handle(INFER_PROTOCOL, async (stream) => {
      opened++
      const lp = lpStream(stream)
      await lp.read()
      await lp.write(encodeFrame(FrameKind.HEAD, { status: 200, contentType: 'text/plain', runnerId: 'old' }))
      await lp.write(encodeFrame(FrameKind.DATA, enc('old')))
      await lp.write(encodeFrame(FrameKind.END))
      await stream.close()
    })
    await until(() => b.connectedPeers().includes(a.peerId))
    for (let i = 0; i < 3; i++) expect(await text((await b.infer(a.peerId, req('m'))).body)).toBe('old')
    expect(opened).toBe(3)
  })

  it('drops an idle stream the peer closed and opens a new one', async () => {
    const { a, b, streams } = await pair(echo)
    expect(await text((await b.infer(a.peerId, req('m', '1'))).body)).toBe('m:1')
    streams[0]!.abort(new Error('peer dropped it'))
    await new Promise((resolve) => setTimeout(resolve, 50))
    expect(await text((await b.infer(a.peerId, req('m', '2'))).body)).toBe('m:2')
    expect(streams).toHaveLength(2)
  })

  it('answers garbage after a served request with an error and closes that stream only', async () => {
    const { a, b, streams } = await pair(echo)
    // a raw stream from b's transport, past the mesh's request pool
    const transport = (b as unknown as { transport: { openStream: (peer: string, proto: string) => Promise<Stream> } }).transport
    const stream = await transport.openStream(a.peerId, INFER_PROTOCOL)
    const res = await requestInferKeep(stream)
    expect(res).toContain('m:raw')
    const lp = lpStream(stream)
    await lp.write(new Uint8Array([9, 9, 9]))
    const answer = await lp.read()
    expect(answer.subarray()[0]).toBe(FrameKind.ERROR)
    await until(() => stream.remoteWriteStatus === 'closed')
    expect(await text((await b.infer(a.peerId, req('m', 'ok'))).body)).toBe('m:ok')
    expect(streams.length).toBe(2)
  })

  it('a one-shot requester (requestInfer) closes its stream and the server lets it go', async () => {
    const { a, b, streams } = await pair(echo)
    const stream = await b.open(a.peerId, INFER_PROTOCOL)
    expect(await text((await requestInfer(stream, req('m', 'once'))).body)).toBe('m:once')
    await until(() => streams[0]?.status === 'closed' && stream.status === 'closed')
  })

  it('delivers a large answer written faster than it is read, in order, and the stream stays usable', async () => {
    const chunk = new Uint8Array(60 * 1024)
    const { a, b, streams } = await pair(async (request, reply) => {
      if (request.model !== 'big') return await echo(request, reply)
      await reply.head({ status: 200, contentType: 'application/octet-stream', runnerId: 'r1' })
      // 50 chunks in one go (3 MB): beyond yamux's initial window of 256 KB, under the 4 MB a
      // requester buffers unread
      for (let i = 0; i < 50; i++) await reply.data(chunk.fill(i % 251))
    })
    const res = await b.infer(a.peerId, req('big'))
    let n = 0
    let bytes = 0
    for await (const part of res.body) {
      for (let j = 0; j < part.length; j++) if (part[j] !== Math.floor((bytes + j) / chunk.length) % 251) throw new Error(`byte ${bytes + j} out of order`)
      bytes += part.length
      if (n++ % 5 === 0) await new Promise((resolve) => setTimeout(resolve, 5)) // a slow reader
    }
    expect(bytes).toBe(50 * chunk.length)
    expect(await text((await b.infer(a.peerId, req('m', 'next'))).body)).toBe('m:next')
    expect(streams).toHaveLength(1)
  })

  it('holds the peer back while the requester does not read, instead of buffering the answer until it overflows', async () => {
    const chunk = new Uint8Array(60 * 1024)
    const total = 200 // 12 MB: three times what a requester may hold unread
    let written = 0
    const { a, b, streams } = await pair(async (request, reply) => {
      if (request.model !== 'huge') return await echo(request, reply)
      await reply.head({ status: 200, contentType: 'application/octet-stream', runnerId: 'r1' })
      for (let i = 0; i < total; i++) {
        await reply.data(chunk.fill(i % 251))
        written++
      }
    })
    const res = await b.infer(a.peerId, req('huge'))
    const it = res.body[Symbol.asyncIterator]()
    const first = await it.next()
    let bytes = first.value?.length ?? 0
    // a client that stops reading for a while: the peer writes until flow control stops it
    await new Promise((resolve) => setTimeout(resolve, 1000))
    expect(written).toBeLessThan(total)
    for (;;) {
      const n = await it.next()
      if (n.done === true) break
      for (let j = 0; j < n.value.length; j += 997) if (n.value[j] !== Math.floor((bytes + j) / chunk.length) % 251) throw new Error(`byte ${bytes + j} out of order`)
      bytes += n.value.length
    }
    expect(bytes).toBe(total * chunk.length)
    expect(await text((await b.infer(a.peerId, req('m', 'after'))).body)).toBe('m:after')
    expect(streams).toHaveLength(1)
  })

  it('merges the tokens of a fast stream into few frames and sends a slow stream token by token', async () => {
    const { a, b } = await pair(async (request, reply) => {
      await reply.head({ status: 200, contentType: 'text/event-stream', runnerId: 'r1' })
      for (let i = 0; i < 5; i++) {
        if (request.model === 'slow') await new Promise((resolve) => setTimeout(resolve, 20))
        await reply.data(enc(`t${i} `))
      }
    })
    const chunks = async (model: string): Promise<string[]> => {
      const out: string[] = []
      for await (const c of (await b.infer(a.peerId, req(model))).body) out.push(new TextDecoder().decode(c))
      return out
    }
    const fast = await chunks('fast')
    expect(fast.join('')).toBe('t0 t1 t2 t3 t4 ')
    expect(fast.length).toBe(1) // written in one turn: one DATA frame
    expect(await chunks('slow')).toEqual(['t0 ', 't1 ', 't2 ', 't3 ', 't4 '])
  })

  it('keeps at most maxIdle idle streams per peer and closes them after idleMs', async () => {
    const { a, b } = await pair(echo)
    const pool = new InferStreams(async (peer) => await b.open(peer, INFER_PROTOCOL), 2, 100)
    const answers = await Promise.all([0, 1, 2, 3].map(async (i) => await text((await pool.request(a.peerId, req('m', String(i)))).body)))
    expect(answers).toEqual(['m:0', 'm:1', 'm:2', 'm:3'])
    expect(pool.idleCount(a.peerId)).toBe(2)
    await until(() => pool.idleCount() === 0)
    expect(await text((await pool.request(a.peerId, req('m', 'later'))).body)).toBe('m:later')
    pool.close()
  })
})

/** Sends one request on a raw stream and reads its answer to END, leaving the stream open. */
async function requestInferKeep (stream: Stream): Promise<string> {
  const lp = lpStream(stream)
  await lp.write(encodeFrame(FrameKind.REQUEST, req('m', 'raw')))
  let out = ''
  while (true) {
    const frame = (await lp.read()).subarray()
    if (frame[0] === FrameKind.END) break
    out += new TextDecoder().decode(frame.subarray(1))
  }
  lp.unwrap()
  return out
}
