/**
 * The llama.cpp RPC tunnel over real libp2p on loopback: two (or three) Libp2pTransports in one
 * process, a TCP server of the test standing in for rpc-server on the member's loopback.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { createHash, randomBytes } from 'node:crypto'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { Stream } from '@libp2p/interface'
import { pino } from 'pino'
import { LlmeshError } from '@llmesh/protocol'
import { ClusterDoc } from '@llmesh/state'
import { RPC_TUNNEL_PROTOCOL } from './constants.js'
import { Libp2pTransport } from './libp2p-transport.js'
import { Mesh } from './mesh.js'
import { recordSigner, recordVerifier } from './record-trust.js'
import { RpcTunnelReplySchema, RpcTunnels, type RpcResolve, type RpcTunnelsInit, type Tunnel } from './rpc-tunnel.js'
import { lengthPrefixed, varintPrefix } from './wire.js'

const logger = pino({ level: 'silent' })
const MiB = 1024 * 1024

async function until (cond: () => boolean, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/** Waits until `value()` stops moving (same over `polls` polls 200 ms apart), bounded; returns it. */
async function settled (value: () => number, polls = 5, ms = 30_000): Promise<number> {
  const deadline = Date.now() + ms
  let last = -1
  let same = 0
  while (Date.now() < deadline) {
    const v = value()
    same = v === last ? same + 1 : 0
    last = v
    if (same >= polls) return v
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
  throw new Error('value did not settle in time')
}

const cleanups: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn()
})

async function node (): Promise<Libp2pTransport> {
  const t = new Libp2pTransport({ clusterId: 'rpc-tunnel-test', privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'] })
  await t.start()
  cleanups.push(async () => { await t.stop() })
  return t
}

function tunnels (t: Libp2pTransport, init?: RpcTunnelsInit): RpcTunnels {
  const r = new RpcTunnels(t, logger, init)
  cleanups.push(async () => { await r.close() })
  return r
}

interface FakeRpcServer {
  port: number
  /** sockets accepted so far */
  accepted: number
  open: Set<Socket>
}

/** A TCP server on loopback, standing in for rpc-server; `onSocket` gets each connection. */
async function tcpServer (onSocket: (s: Socket) => void): Promise<FakeRpcServer> {
  const open = new Set<Socket>()
  const state: FakeRpcServer = { port: 0, accepted: 0, open }
  const server: Server = createServer({ allowHalfOpen: true }, (s) => {
    state.accepted++
    open.add(s)
    s.on('close', () => { open.delete(s) })
    s.on('error', () => {})
    onSocket(s)
  })
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  state.port = (server.address() as { port: number }).port
  cleanups.push(async () => {
    for (const s of open) s.destroy()
    await new Promise((resolve) => { server.close(resolve) })
  })
  return state
}

async function echoServer (): Promise<FakeRpcServer> {
  return await tcpServer((s) => { s.pipe(s) })
}

/** A member serving `resolve` and a coordinator connected to it. */
async function pair (resolve: (target: number) => RpcResolve, target: FakeRpcServer, memberInit?: RpcTunnelsInit): Promise<{ member: Libp2pTransport, coordinator: Libp2pTransport, memberRpc: RpcTunnels, coordinatorRpc: RpcTunnels }> {
  const member = await node()
  const coordinator = await node()
  await coordinator.dial({ addrs: member.addrs() })
  const memberRpc = tunnels(member, memberInit)
  await memberRpc.serve(resolve(target.port))
  return { member, coordinator, memberRpc, coordinatorRpc: tunnels(coordinator) }
}

const toLoopback = (port: number): RpcResolve => async () => ({ host: '127.0.0.1', port })

async function listen (rpc: RpcTunnels, peer: string, model = 'm'): Promise<Tunnel> {
  const t = await rpc.listen(peer, model)
  cleanups.push(async () => { await t.close() })
  return t
}

function client (port: number): Socket {
  const s = connect({ host: '127.0.0.1', port })
  s.on('error', () => {})
  cleanups.push(() => { s.destroy() })
  return s
}

/** Writes `data`, ends, and returns everything read until the other side ends. */
async function roundTrip (port: number, data: Uint8Array): Promise<Buffer> {
  const s = client(port)
  const chunks: Buffer[] = []
  return await new Promise((resolve, reject) => {
    s.on('data', (c: Buffer) => { chunks.push(c) })
    s.on('end', () => { resolve(Buffer.concat(chunks)) })
    s.on('close', () => { reject(new Error('closed before its end')) })
    s.end(data)
  })
}

/** Resolves with what the socket read once it closes. */
async function closed (s: Socket): Promise<number> {
  let read = 0
  s.on('data', (c: Buffer) => { read += c.length })
  if (s.destroyed) return read
  return await new Promise((resolve) => { s.on('close', () => { resolve(read) }) })
}

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

describe('rpc tunnel', () => {
  it('carries 8 MiB both ways intact and counts the bytes of each way', async () => {
    const echo = await echoServer()
    const asked: Array<[string, string]> = []
    const { member, coordinator, memberRpc, coordinatorRpc } = await pair((port) => async (peer, model) => {
      asked.push([peer, model])
      return { host: '127.0.0.1', port }
    }, echo)
    const tunnel = await listen(coordinatorRpc, member.peerId, 'tiny-model')
    const data = randomBytes(8 * MiB)
    const back = await roundTrip(tunnel.port, data)
    expect(back.length).toBe(data.length)
    expect(sha(back)).toBe(sha(data))
    expect(asked).toEqual([[coordinator.peerId, 'tiny-model']])
    expect(tunnel.bytesSent).toBe(8 * MiB)
    expect(tunnel.bytesReceived).toBe(8 * MiB)
    expect(tunnel.connections).toBe(1)
    expect(tunnel.lastError).toBeUndefined()
    // both ends closed cleanly: nothing is left open on either agent
    await until(() => tunnel.active === 0 && memberRpc.inboundCount() === 0 && echo.open.size === 0)
  })

  it('gives two sockets at once a stream each', async () => {
    const echo = await echoServer()
    const { member, coordinator, memberRpc, coordinatorRpc } = await pair(toLoopback, echo)
    const tunnel = await listen(coordinatorRpc, member.peerId)
    const a = client(tunnel.port)
    const b = client(tunnel.port)
    const got = { a: '', b: '' }
    a.on('data', (c: Buffer) => { got.a += c.toString() })
    b.on('data', (c: Buffer) => { got.b += c.toString() })
    a.write('from a')
    b.write('from b')
    await until(() => got.a === 'from a' && got.b === 'from b')
    expect(memberRpc.inboundCount(coordinator.peerId)).toBe(2)
    expect(echo.accepted).toBe(2)
    expect(tunnel.connections).toBe(2)
    expect(tunnel.active).toBe(2)
    a.end()
    b.end()
    await until(() => tunnel.active === 0 && memberRpc.inboundCount() === 0)
  })

  it("closes the coordinator's socket when the member's agent refuses it, and says why", async () => {
    const echo = await echoServer()
    const { member, memberRpc, coordinatorRpc } = await pair(() => async () => { throw new LlmeshError('FORBIDDEN', 'no placement names this coordinator') }, echo)
    const tunnel = await listen(coordinatorRpc, member.peerId)
    const s = client(tunnel.port)
    s.write('hello')
    expect(await closed(s)).toBe(0)
    expect(tunnel.lastError?.code).toBe('FORBIDDEN')
    expect(tunnel.lastError?.message).toContain('no placement names this coordinator')
    expect(memberRpc.refused['not-allowed']).toBe(1)
    expect(echo.accepted).toBe(0)
    expect(tunnel.bytesSent).toBe(0)
  })

  it("closes the coordinator's socket when the member's rpc-server is not there, or not on loopback", async () => {
    // a port nothing listens on: a server's, closed again at once
    const probe = createServer()
    await new Promise<void>((resolve) => { probe.listen(0, '127.0.0.1', resolve) })
    const gone: FakeRpcServer = { port: (probe.address() as { port: number }).port, accepted: 0, open: new Set() }
    await new Promise((resolve) => { probe.close(resolve) })
    const { member, memberRpc, coordinatorRpc } = await pair((port) => async (_peer, model) => ({ host: model === 'remote' ? '10.1.2.3' : '127.0.0.1', port }), gone)
    const down = await listen(coordinatorRpc, member.peerId)
    expect(await closed(client(down.port))).toBe(0)
    expect(down.lastError?.code).toBe('RUNNER_FAILED')
    expect(memberRpc.refused['target-unreachable']).toBe(1)
    const remote = await listen(coordinatorRpc, member.peerId, 'remote')
    expect(await closed(client(remote.port))).toBe(0)
    expect(remote.lastError?.message).toContain('not a loopback address')
  })

  it('leaves nothing open when the socket goes while the member still decides', async () => {
    const echo = await echoServer()
    let decide: (() => void) | undefined
    const { member, memberRpc, coordinatorRpc } = await pair((port) => async () => {
      await new Promise<void>((resolve) => { decide = resolve })
      return { host: '127.0.0.1', port }
    }, echo)
    const tunnel = await listen(coordinatorRpc, member.peerId)
    const s = client(tunnel.port)
    s.write('hello')
    await until(() => decide != null && memberRpc.inboundCount() === 1)
    // (the coordinator reads nothing of a socket before the member's answer, so it sees the
    // socket's end once the member answers)
    s.destroy()
    decide!()
    await until(() => tunnel.active === 0 && memberRpc.inboundCount() === 0 && echo.open.size === 0)
    decide = undefined
    const data = randomBytes(1024)
    const trip = roundTrip(tunnel.port, data)
    await until(() => decide != null)
    decide!()
    expect(sha(await trip)).toBe(sha(data))
    expect(tunnel.lastError).toBeUndefined()
  })

  it('refuses a garbage or oversize header with a short error, survives, and still serves a good client after', async () => {
    const echo = await echoServer()
    const { member, coordinatorRpc, memberRpc } = await pair(toLoopback, echo, { headerTimeoutMs: 500 })
    const stranger = await node()
    await stranger.dial({ addrs: member.addrs() })
    const json = (v: unknown): Uint8Array => lengthPrefixed(new TextEncoder().encode(JSON.stringify(v)))
    const cases: Array<{ bytes: Uint8Array, code: string }> = [
      // a length prefix announcing 1 GiB
      { bytes: Uint8Array.from([0x80, 0x80, 0x80, 0x80, 0x04, 1, 2, 3]), code: 'INVALID_REQUEST' },
      // a prefix of 9 continuation bytes: no length at all
      { bytes: new Uint8Array(9).fill(0xff), code: 'INVALID_REQUEST' },
      { bytes: lengthPrefixed(randomBytes(64)), code: 'INVALID_REQUEST' },
      { bytes: json({ model: 5 }), code: 'INVALID_REQUEST' },
      { bytes: json({ model: 'x'.repeat(300) }), code: 'INVALID_REQUEST' },
      { bytes: json(['not', 'an', 'object']), code: 'INVALID_REQUEST' },
      // nothing at all: cut after the header timeout
      { bytes: new Uint8Array(0), code: 'STALLED' }
    ]
    for (const { bytes, code } of cases) {
      const stream = await stranger.openStream(member.peerId, RPC_TUNNEL_PROTOCOL)
      const reply = replyOf(stream)
      if (bytes.length > 0) stream.send(bytes)
      const r = await reply
      expect(r).toMatchObject({ ok: false, code })
      expect(['reset', 'aborted', 'closed']).toContain(stream.status)
    }
    expect(memberRpc.refused['malformed-header']).toBe(6)
    expect(memberRpc.refused['header-timeout']).toBe(1)
    expect(echo.accepted).toBe(0)
    await until(() => memberRpc.inboundCount() === 0)
    const tunnel = await listen(coordinatorRpc, member.peerId)
    const data = randomBytes(64 * 1024)
    expect(sha(await roundTrip(tunnel.port, data))).toBe(sha(data))
  })

  it('answers BUSY beyond the streams one peer may hold, and serves the others', async () => {
    const echo = await echoServer()
    const { member, memberRpc, coordinatorRpc } = await pair(toLoopback, echo, { maxStreamsPerPeer: 2 })
    const tunnel = await listen(coordinatorRpc, member.peerId)
    const a = client(tunnel.port)
    const b = client(tunnel.port)
    let echoed = ''
    a.on('data', (c: Buffer) => { echoed += c.toString() })
    b.on('data', (c: Buffer) => { echoed += c.toString() })
    a.write('a')
    b.write('b')
    await until(() => echoed.length === 2)
    const c = client(tunnel.port)
    expect(await closed(c)).toBe(0)
    expect(tunnel.lastError?.code).toBe('BUSY')
    expect(memberRpc.refused['streams-per-peer']).toBe(1)
    a.write('a')
    await until(() => echoed.length === 3)
  })

  it("closePeer cuts open tunnel sockets at once, on the coordinator's side or the member's", async () => {
    const echo = await echoServer()
    const { member, coordinator, memberRpc, coordinatorRpc } = await pair(toLoopback, echo)
    const tunnel = await listen(coordinatorRpc, member.peerId)
    for (const cut of [() => { coordinatorRpc.closePeer(member.peerId) }, () => { memberRpc.closePeer(coordinator.peerId) }]) {
      const s = client(tunnel.port)
      let echoed = ''
      s.on('data', (c: Buffer) => { echoed += c.toString() })
      s.write('ping')
      await until(() => echoed === 'ping')
      const gone = closed(s)
      cut()
      await gone
      await until(() => tunnel.active === 0 && memberRpc.inboundCount() === 0 && echo.open.size === 0)
    }
    // the listener stays: a new socket gets a new stream
    const data = randomBytes(1024)
    expect(sha(await roundTrip(tunnel.port, data))).toBe(sha(data))
    expect(tunnel.connections).toBe(3)
    // a closed tunnel cuts its open sockets and listens no more
    const open = client(tunnel.port)
    open.write('x')
    await until(() => echo.open.size === 1)
    const gone = closed(open)
    await tunnel.close()
    await gone
    const refused = await new Promise<string>((resolve) => {
      const s = connect({ host: '127.0.0.1', port: tunnel.port })
      s.on('connect', () => { s.destroy(); resolve('connected') })
      s.on('error', (err: NodeJS.ErrnoException) => { resolve(err.code ?? 'error') })
    })
    expect(refused).toBe('ECONNREFUSED')
    await until(() => memberRpc.inboundCount() === 0 && echo.open.size === 0)
  })

  it('holds a fast sender back while the rpc-server reads nothing, then delivers every byte', async () => {
    const total = 64 * MiB
    let reading: Socket | undefined
    const hash = createHash('sha256')
    let received = 0
    const sink = await tcpServer((s) => {
      reading = s
      s.pause()
      s.on('data', (c: Buffer) => {
        hash.update(c)
        received += c.length
      })
    })
    const { member, coordinatorRpc } = await pair(toLoopback, sink)
    const tunnel = await listen(coordinatorRpc, member.peerId)
    const s = client(tunnel.port)
    const sent = createHash('sha256')
    const block = randomBytes(MiB)
    let written = 0
    const writeAll = async (): Promise<void> => {
      while (written < total) {
        block.writeUInt32LE(written / MiB, 0)
        sent.update(block)
        written += block.length
        if (!s.write(Buffer.from(block))) await new Promise((resolve) => { s.once('drain', resolve) })
      }
      s.end()
    }
    const writing = writeAll()
    await until(() => reading != null)
    // what the tunnel took in stays within its window and the sockets' buffers
    const held = await settled(() => tunnel.bytesSent)
    expect(held).toBeLessThan(total / 2)
    expect(written).toBeLessThan(total)
    reading!.resume()
    await writing
    await until(() => received === total, 60_000)
    expect(hash.digest('hex')).toBe(sent.digest('hex'))
    expect(tunnel.bytesSent).toBe(total)
  })

  it('holds the rpc-server back while the coordinator reads nothing, then delivers every byte', async () => {
    const total = 64 * MiB
    const sent = createHash('sha256')
    let written = 0
    const source = await tcpServer((s) => {
      const block = randomBytes(MiB)
      const more = (): void => {
        while (written < total) {
          block.writeUInt32LE(written / MiB, 0)
          sent.update(block)
          written += block.length
          if (!s.write(Buffer.from(block))) {
            s.once('drain', more)
            return
          }
        }
        s.end()
      }
      more()
    })
    const { member, coordinatorRpc } = await pair(toLoopback, source)
    const tunnel = await listen(coordinatorRpc, member.peerId)
    const s = client(tunnel.port)
    s.pause()
    // neither agent takes in more than its window and the sockets' buffers: the rpc-server's
    // writes wait
    await settled(() => tunnel.bytesReceived + written)
    expect(tunnel.bytesReceived).toBeGreaterThan(0)
    expect(written).toBeLessThan(total / 2)
    const hash = createHash('sha256')
    let received = 0
    s.on('data', (c: Buffer) => {
      hash.update(c)
      received += c.length
    })
    s.resume()
    await until(() => received === total, 60_000)
    expect(hash.digest('hex')).toBe(sent.digest('hex'))
    expect(tunnel.bytesReceived).toBe(total)
  })

  it('is the Mesh facade: mesh.rpc serves and listens, and a stopped mesh cuts its tunnels', async () => {
    const meshes: Mesh[] = []
    cleanups.push(async () => { await Promise.all(meshes.map(async (m) => { await m.stop() })) })
    const start = async (bootstrap: string[] = []): Promise<Mesh> => {
      const privateKey = await generateKeyPair('Ed25519')
      const doc = new ClusterDoc(peerIdFromPrivateKey(privateKey).toString(), undefined, { verifier: recordVerifier(), signer: recordSigner(privateKey) })
      const mesh = new Mesh({
        clusterId: 'rpc-tunnel-test', privateKey, listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap, doc, logger,
        incarnation: Date.now(), metrics: () => ({ slotsBusy: 0, slotsTotal: 1, queueDepth: 0, tokensPerSec: 0, latencyMs: 0, successRate: 1, claims: {} })
      })
      await mesh.start()
      meshes.push(mesh)
      return mesh
    }
    const echo = await echoServer()
    const memberMesh = await start()
    const coordinatorMesh = await start(memberMesh.addrs())
    await memberMesh.rpc.serve(toLoopback(echo.port))
    const tunnel = await coordinatorMesh.rpc.listen(memberMesh.peerId, 'm')
    const data = randomBytes(256 * 1024)
    expect(sha(await roundTrip(tunnel.port, data))).toBe(sha(data))
    const s = client(tunnel.port)
    s.write('x')
    await until(() => echo.open.size === 1)
    const gone = closed(s)
    await memberMesh.stop()
    await gone
    expect(echo.accepted).toBe(2)
  })
})

/** The reply header a member sends on a raw stream, read before the stream goes. */
async function replyOf (stream: Stream): Promise<unknown> {
  const chunks: Uint8Array[] = []
  stream.addEventListener('message', (evt) => { chunks.push(evt.data.subarray()) })
  await new Promise((resolve) => { stream.addEventListener('close', resolve) })
  const all = Buffer.concat(chunks)
  const prefix = varintPrefix(all)
  if (prefix == null) return undefined
  return RpcTunnelReplySchema.parse(JSON.parse(all.subarray(prefix.size, prefix.size + prefix.length).toString()))
}
