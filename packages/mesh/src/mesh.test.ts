import { afterEach, describe, expect, it } from 'vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { pino } from 'pino'
import { INFER_PROTOCOL, LlmeshError, METRICS_PROTOCOL, SYNC_PROTOCOL, type UnsignedNodeRecord } from '@llmesh/protocol'
import { lpStream } from '@libp2p/utils'
import { ClusterDoc } from '@llmesh/state'
import { recordSigner, recordVerifier } from './record-trust.js'
import { Mesh } from './mesh.js'
import { requestInfer, serveInfer } from './infer-stream.js'

const logger = pino({ level: 'silent' })

function record (peerId: string, model: string): UnsignedNodeRecord {
  return {
    peerId, name: peerId.slice(-6), version: 'test', protocol: 1, addrs: [], api: '127.0.0.1:1',
    hardware: { cpus: 1, memBytes: 1, platform: 'linux', arch: 'x64' },
    models: [{ name: model, sizeBytes: 1, digest: 'd', format: 'gguf' }], runners: [], startedAt: 1, updatedAt: 1
  }
}

async function until (cond: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

const started: Mesh[] = []
afterEach(async () => { await Promise.all(started.splice(0).map(async (m) => { await m.stop() })) })

async function startMesh (bootstrap: string[] = [], heartbeatIntervalMs?: number): Promise<{ mesh: Mesh, doc: ClusterDoc }> {
  const privateKey = await generateKeyPair('Ed25519')
  const doc = new ClusterDoc(peerIdFromPrivateKey(privateKey).toString(), undefined, { verifier: recordVerifier(), signer: recordSigner(privateKey) })
  const mesh = new Mesh({
    clusterId: 'test', privateKey, listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap, doc, logger, ...(heartbeatIntervalMs != null ? { heartbeatIntervalMs } : {}),
    incarnation: Date.now(), metrics: () => ({ slotsBusy: 0, slotsTotal: 1, queueDepth: 0, tokensPerSec: 0, latencyMs: 0, successRate: 1, claims: {} })
  })
  await mesh.start()
  started.push(mesh)
  return { mesh, doc }
}

describe('Mesh on loopback', () => {
  it('joins through a bootstrap address and converges the cluster document both ways', async () => {
    const a = await startMesh()
    a.doc.setSelf(record(a.mesh.peerId, 'written-before-b-existed'))
    const b = await startMesh(a.mesh.addrs())
    b.doc.setSelf(record(b.mesh.peerId, 'model-b'))
    await until(() => a.doc.records().length === 2 && b.doc.records().length === 2)
    // a later change travels as a gossip delta
    a.doc.setSelf(record(a.mesh.peerId, 'changed'))
    await until(() => b.doc.get(a.mesh.peerId)?.models[0]?.name === 'changed')
    expect(a.doc.get(b.mesh.peerId)?.models[0]?.name).toBe('model-b')
  })

  it('holds a heartbeat that came before its record to that record once it arrives, without waiting for the next heartbeat', async () => {
    const a = await startMesh()
    // B's only heartbeat for a minute is the one sent on connecting, before B has any record
    const b = await startMesh(a.mesh.addrs(), 60_000)
    await until(() => a.mesh.membership.get(b.mesh.peerId) != null)
    expect(a.mesh.membership.get(b.mesh.peerId)?.metrics.slotsTotal).toBe(0)
    const heard = a.mesh.stats.heartbeatsReceived
    b.doc.setSelf({ ...record(b.mesh.peerId, 'm'), runners: [{ id: 'r', kind: 'llama-server', model: 'm', state: 'ready', slots: 1 }] })
    await until(() => a.mesh.membership.get(b.mesh.peerId)?.metrics.slotsTotal === 1)
    expect(a.mesh.stats.heartbeatsReceived).toBe(heard)
  })

  it('hears heartbeats: peers are alive, and a graceful leave is seen as left at once', async () => {
    const a = await startMesh()
    const b = await startMesh(a.mesh.addrs())
    // the slots a heartbeat reports are held to the slots of the sender's record (see clampHeartbeat)
    b.doc.setSelf({ ...record(b.mesh.peerId, 'm'), runners: [{ id: 'r', kind: 'llama-server', model: 'm', state: 'ready', slots: 1 }] })
    await until(() => a.mesh.membership.get(b.mesh.peerId)?.state === 'alive' && b.mesh.membership.get(a.mesh.peerId)?.state === 'alive')
    await until(() => a.mesh.membership.get(b.mesh.peerId)?.metrics.slotsTotal === 1)
    await b.mesh.leave()
    await until(() => a.mesh.membership.get(b.mesh.peerId)?.state === 'left')
    expect(a.mesh.membership.isUsable(b.mesh.peerId)).toBe(false)
  })

  it('carries an inference request and a streamed response over /llmesh/infer/1', async () => {
    const a = await startMesh()
    const b = await startMesh(a.mesh.addrs())
    await a.mesh.handle(INFER_PROTOCOL, async (stream) => {
      await serveInfer(stream, async (req, reply) => {
        if (req.model === 'missing') throw new LlmeshError('MODEL_NOT_FOUND', 'no such model here')
        await reply.head({ status: 200, contentType: 'text/event-stream', runnerId: 'r1' })
        for (const word of ['one', 'two', 'three']) await reply.data(new TextEncoder().encode(`data: ${word}\n\n`))
      })
    })
    await until(() => b.mesh.connectedPeers().includes(a.mesh.peerId))
    const stream = await b.mesh.open(a.mesh.peerId, INFER_PROTOCOL)
    const res = await requestInfer(stream, { id: 'x', path: '/v1/chat/completions', model: 'm', body: { messages: [] } })
    expect(res.head).toEqual({ status: 200, contentType: 'text/event-stream', runnerId: 'r1' })
    let text = ''
    for await (const chunk of res.body) text += new TextDecoder().decode(chunk)
    expect(text).toBe('data: one\n\ndata: two\n\ndata: three\n\n')

    const failing = await b.mesh.open(a.mesh.peerId, INFER_PROTOCOL)
    await expect(requestInfer(failing, { id: 'y', path: '/v1/chat/completions', model: 'missing', body: {} }))
      .rejects.toMatchObject({ code: 'MODEL_NOT_FOUND', message: 'no such model here' })
  })

  it('survives garbage on every protocol it serves and keeps working', async () => {
    const a = await startMesh()
    a.doc.setSelf(record(a.mesh.peerId, 'still-here'))
    const b = await startMesh(a.mesh.addrs())
    await a.mesh.handle(INFER_PROTOCOL, async (stream) => {
      await serveInfer(stream, async (_req, reply) => {
        await reply.head({ status: 200, contentType: 'text/plain', runnerId: 'r' })
        await reply.data(new TextEncoder().encode('ok'))
      })
    })
    await until(() => b.mesh.connectedPeers().includes(a.mesh.peerId))
    // raw streams from b's transport, past the mesh's own framing
    const transport = (b.mesh as unknown as { transport: { openStream: (peer: string, proto: string) => Promise<import('@libp2p/interface').Stream> } }).transport
    const libp2p = { dialProtocol: async (peer: string, proto: string) => await transport.openStream(peer, proto) }
    const target = a.mesh.peerId
    const garbage = [
      new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x0f]), // a length prefix of gigabytes
      new Uint8Array([5, 1, 2, 3, 4, 5]), // a short frame of nonsense
      new TextEncoder().encode('\u0010{"v":1,"seq":"x"}') // a heartbeat that is not one
    ]
    for (const proto of [INFER_PROTOCOL, METRICS_PROTOCOL, SYNC_PROTOCOL]) {
      for (const bytes of garbage) {
        const stream = await libp2p.dialProtocol(target, proto)
        stream.send(bytes)
        await stream.close().catch(() => {})
      }
      // well-framed but meaningless payloads
      const stream = await libp2p.dialProtocol(target, proto)
      const lp = lpStream(stream)
      await lp.write(new Uint8Array([9, 9, 9])).catch(() => {})
      await lp.write(new TextEncoder().encode('{"v":1,"incarnation":-1}')).catch(() => {})
      await stream.close().catch(() => {})
    }
    await until(() => a.mesh.stats.heartbeatsDropped > 0)
    // still serving: a real request, and the document still syncs to a newcomer
    const res = await requestInfer(await b.mesh.open(a.mesh.peerId, INFER_PROTOCOL), { id: 'ok', path: '/v1/chat/completions', model: 'm', body: {} })
    let text = ''
    for await (const chunk of res.body) text += new TextDecoder().decode(chunk)
    expect(text).toBe('ok')
    const c = await startMesh(a.mesh.addrs())
    await until(() => c.doc.get(a.mesh.peerId)?.models[0]?.name === 'still-here')
  })
})

