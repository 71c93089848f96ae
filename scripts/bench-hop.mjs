#!/usr/bin/env node
// Remote-hop micro-benchmark: two processes on loopback, each with a Mesh (the agent's libp2p
// configuration: tcp, noise, yamux, identify, ping, gossipsub, heartbeats), and no HTTP or
// runner in between. Prints p50/p99 of sequential round trips for:
//   tcp       plain TCP ping-pong between the processes (the floor)
//   echo      a libp2p stream per round trip: open, write one lp message, read one back
//   long      one long-lived libp2p stream, lp ping-pong on it
//   infer     the /llmesh/infer/1 exchange (the peer answers HEAD, one DATA, END at once), body
//             drained: on a fresh stream per request (mesh.open + requestInfer), and as the agent
//             makes it (mesh.infer, which reuses idle streams to the peer)
// and both infer variants with C concurrent requesters, in requests/s.
// Usage: npx tsc -b && node scripts/bench-hop.mjs [--n 2000] [--concurrency 32] [--only tcp,echo,long,infer]
import '../packages/kit/dist/polyfill.js'
import { fork } from 'node:child_process'
import { createServer, connect } from 'node:net'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { pino } from 'pino'
import { INFER_PROTOCOL } from '../packages/protocol/dist/index.js'
import { ClusterDoc } from '../packages/state/dist/index.js'
import { Mesh, loadOrCreateKey, peerIdOfKey, recordSigner, recordVerifier, requestInfer, serveInfer } from '../packages/mesh/dist/index.js'

const ECHO = '/llmesh-bench/echo/1'
const LONG = '/llmesh-bench/long/1'
const { values } = parseArgs({ options: { n: { type: 'string', default: '2000' }, concurrency: { type: 'string', default: '32' }, only: { type: 'string', default: 'tcp,echo,long,infer' }, role: { type: 'string', default: 'client' } } })
const N = Number(values.n)
const C = Number(values.concurrency)
const ONLY = new Set(values.only.split(','))

async function startMesh (dir, bootstrap = []) {
  const privateKey = await loadOrCreateKey(join(dir, 'key'))
  const doc = new ClusterDoc(peerIdOfKey(privateKey), undefined, { verifier: recordVerifier(), signer: recordSigner(privateKey) })
  const mesh = new Mesh({
    clusterId: 'bench', privateKey, listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap, doc, logger: pino({ level: 'silent' }),
    incarnation: Date.now(), metrics: () => ({ slotsBusy: 0, slotsTotal: 1, queueDepth: 0, tokensPerSec: 0, latencyMs: 0, successRate: 1, claims: {} })
  })
  await mesh.start()
  return mesh
}

/** The mesh's transport, serving raw streams of the protocols of this benchmark only. */
const nodeOf = (mesh) => ({ handle: async (protocol, handler) => { await mesh.transport.handleStream(protocol, (stream) => { void handler(stream) }) } })

async function server () {
  const dir = await mkdtemp(join(tmpdir(), 'llmesh-bench-hop-'))
  const mesh = await startMesh(dir)
  const { lpStream } = await import('../packages/mesh/node_modules/@libp2p/utils/dist/src/index.js')
  const head = { status: 200, contentType: 'application/json', runnerId: 'r' }
  const body = new TextEncoder().encode('{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"ok"}}]}')
  await mesh.handle(INFER_PROTOCOL, async (stream) => {
    await serveInfer(stream, async (_request, reply) => {
      await reply.head(head)
      await reply.data(body)
    })
  })
  await nodeOf(mesh).handle(ECHO, async (stream) => {
    const lp = lpStream(stream)
    await lp.write(await lp.read())
    await stream.close()
  })
  await nodeOf(mesh).handle(LONG, async (stream) => {
    const lp = lpStream(stream)
    try { while (true) await lp.write(await lp.read()) } catch {}
  })
  const tcp = createServer({ noDelay: true }, (s) => { s.on('data', (d) => s.write(d)) })
  await new Promise((resolve) => tcp.listen(0, '127.0.0.1', resolve))
  process.send({ addrs: mesh.addrs(), peerId: mesh.peerId, tcpPort: tcp.address().port })
  process.on('message', async () => {
    await mesh.stop()
    tcp.close()
    await rm(dir, { recursive: true, force: true })
    process.exit(0)
  })
}

const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * s.length))] }

async function time (name, fn) {
  for (let i = 0; i < Math.min(200, N); i++) await fn()
  const xs = []
  for (let i = 0; i < N; i++) {
    const t0 = performance.now()
    await fn()
    xs.push(performance.now() - t0)
  }
  console.log(`   ${name.padEnd(42)} ${pct(xs, 0.5).toFixed(3).padStart(7)} ${pct(xs, 0.99).toFixed(3).padStart(8)}`)
}

async function client () {
  const child = fork(new URL(import.meta.url).pathname, ['--role', 'server'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const info = await new Promise((resolve) => child.once('message', resolve))
  const dir = await mkdtemp(join(tmpdir(), 'llmesh-bench-hop-'))
  const mesh = await startMesh(dir, info.addrs)
  const { lpStream } = await import('../packages/mesh/node_modules/@libp2p/utils/dist/src/index.js')
  try {
    const deadline = Date.now() + 10_000
    while (!mesh.connectedPeers().includes(info.peerId)) {
      if (Date.now() > deadline) throw new Error('peer not connected')
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    await new Promise((resolve) => setTimeout(resolve, 500)) // identify, first sync and heartbeats settle
    const payload = new Uint8Array(200).fill(97)
    console.log(`\nround trips between two processes on loopback (sequential, n=${N}), ms`)
    console.log('   exchange                                        p50      p99')
    if (ONLY.has('tcp')) {
      const sock = connect({ port: info.tcpPort, host: '127.0.0.1', noDelay: true })
      await new Promise((resolve) => sock.once('connect', resolve))
      await time('tcp ping-pong', async () => {
        sock.write(payload)
        let got = 0
        await new Promise((resolve) => {
          const on = (d) => { got += d.length; if (got >= payload.length) { sock.off('data', on); resolve() } }
          sock.on('data', on)
        })
      })
      sock.destroy()
    }
    if (ONLY.has('long')) {
      const stream = await mesh.open(info.peerId, LONG)
      const lp = lpStream(stream)
      await time('one long-lived stream, lp ping-pong', async () => {
        await lp.write(payload)
        await lp.read()
      })
      stream.abort(new Error('done'))
    }
    if (ONLY.has('echo')) {
      await time('new stream per round trip (echo)', async () => {
        const stream = await mesh.open(info.peerId, ECHO)
        const lp = lpStream(stream)
        await lp.write(payload)
        await lp.read()
        await stream.close()
      })
    }
    const request = { id: 'bench', path: '/v1/chat/completions', model: 'fast', body: { model: 'fast', max_tokens: 1, messages: [{ role: 'user', content: 'hi' }] } }
    const variants = {
      'infer, fresh stream per request': async () => {
        const stream = await mesh.open(info.peerId, INFER_PROTOCOL)
        const res = await requestInfer(stream, request)
        for await (const _ of res.body) {}
      },
      'infer, mesh.infer (idle streams reused)': async () => {
        const res = await mesh.infer(info.peerId, request)
        for await (const _ of res.body) {}
      }
    }
    if (ONLY.has('infer')) {
      for (const [name, fn] of Object.entries(variants)) await time(name, fn)
      for (const [name, fn] of Object.entries(variants)) {
        let next = 0
        const t0 = performance.now()
        await Promise.all(Array.from({ length: C }, async () => { while (next++ < N * 2) await fn() }))
        console.log(`   ${name}, ${C} concurrent: ${((N * 2) / ((performance.now() - t0) / 1000)).toFixed(0)} req/s`)
      }
    }
  } finally {
    await mesh.stop()
    child.send('stop')
    await rm(dir, { recursive: true, force: true })
  }
}

if (values.role === 'server') await server()
else await client()
