#!/usr/bin/env node
// Mesh convergence benchmark: N agents, one per network namespace on a bridge, found by mDNS
// alone. Prints, for each N: time from the last agent's start to full convergence, failure
// detection after a link cut (suspect, dead), reconvergence after heal, whether a 1 s flap
// evicts anyone, wire bytes per agent per second at idle, and the cluster document's size
// after 10,000 runner updates. Needs root (ip netns). Usage: node scripts/bench-mesh.mjs [N ...]
import '@llmesh/protocol/polyfill'
import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { TestNetwork, cleanupStaleTestNetworks, netnsAvailable, netnsUnavailableReason, startAgentProcess } from '@llmesh/fixtures'
import { ClusterDoc } from '@llmesh/state'

const sizes = process.argv.slice(2).map(Number).filter((n) => n > 1)
if (sizes.length === 0) sizes.push(3, 20)
if (!netnsAvailable()) {
  console.error(`bench-mesh needs network namespaces: ${netnsUnavailableReason()}`)
  process.exit(1)
}
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * A poller inside host i's namespace asks its agent for the view every 25 ms and prints a line
 * whenever the view changes: "<ms since epoch> <peerId>=<state><c|-> ...". Same machine clock
 * for every poller, so the times compare.
 */
function startPoller (net, i, api) {
  const script = `
    let last = ''
    const tick = async () => {
      try {
        const v = await (await fetch(${JSON.stringify(`${api}/mesh/view`)})).json()
        const line = v.nodes.filter(n => !n.self).map(n => n.peerId + '=' + n.state + (n.connected ? 'c' : '-')).sort().join(' ')
        if (line !== last) { last = line; process.stdout.write(Date.now() + ' ' + line + '\\n') }
      } catch {}
      setTimeout(tick, 25)
    }
    tick()`
  const child = net.exec(i, process.execPath, ['-e', script])
  const poller = { child, view: new Map(), history: [] }
  let buf = ''
  child.stdout.on('data', (d) => {
    buf += d.toString()
    let nl
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl)
      buf = buf.slice(nl + 1)
      const [t, ...pairs] = line.split(' ')
      const view = new Map(pairs.filter(Boolean).map((p) => { const [id, s] = p.split('='); return [id, s] }))
      poller.view = view
      poller.history.push({ t: Number(t), view })
    }
  })
  return poller
}

/** First time at or after `from` when `pred(view)` held on this poller, or undefined. */
function firstTime (poller, from, pred) {
  let state = null
  for (const h of poller.history) {
    if (h.t < from) { state = h.view; continue }
    if (state != null && pred(state)) return from
    state = null
    if (pred(h.view)) return h.t
  }
  if (state != null && pred(state)) return from
  return undefined
}

async function waitUntil (what, fn, timeoutMs) {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (fn()) return
    await sleep(20)
  }
  throw new Error(`timed out waiting for ${what}`)
}

async function wireBytes (net) {
  let total = 0
  for (let i = 0; i < net.hosts.length; i++) {
    const res = await net.run(i, 'cat', ['/sys/class/net/eth0/statistics/tx_bytes'])
    total += Number(res.stdout.trim())
  }
  return total
}

async function benchN (n) {
  await cleanupStaleTestNetworks()
  const net = await TestNetwork.create({ hosts: n })
  const dir = await mkdtemp(join(tmpdir(), 'llmesh-bench-'))
  const agents = []
  const pollers = []
  const result = { n }
  try {
    process.stdout.write(`\nN = ${n}: starting ${n} agents, one per namespace ...\n`)
    const started = await Promise.all(net.hosts.map((h, i) => startAgentProcess({
      name: `h${i}`,
      dataDir: join(dir, `h${i}`),
      netns: h.name,
      startTimeoutMs: 120_000,
      args: ['--listen', `/ip4/${h.ip}/tcp/4778`, '--api-port', '0', '--cluster', 'bench', '--log-level', 'error']
    }).then((a) => { a.startedAt = Date.now(); return a })))
    agents.push(...started)
    const lastStart = Math.max(...agents.map((a) => a.startedAt))
    const ids = agents.map((a) => a.info.peerId)
    agents.forEach((a, i) => pollers.push(startPoller(net, i, a.info.api)))
    const complete = (i, view) => ids.every((id, j) => j === i || view.get(id) === 'alivec')
    await waitUntil('full convergence', () => pollers.every((p, i) => complete(i, p.view)), 60_000)
    result.convergeMs = Math.max(...pollers.map((p, i) => firstTime(p, 0, (v) => complete(i, v)))) - lastStart
    process.stdout.write(`  converged ${result.convergeMs} ms after the last agent started\n`)

    await sleep(3000)
    const b0 = await wireBytes(net)
    const t0 = Date.now()
    await sleep(10_000)
    const b1 = await wireBytes(net)
    result.idleBytesPerSecPerAgent = Math.round((b1 - b0) / ((Date.now() - t0) / 1000) / n)
    process.stdout.write(`  idle: ${result.idleBytesPerSecPerAgent} B/s sent per agent (eth0 tx: gossip, heartbeats, mDNS, pings, TCP/IP headers)\n`)

    const victim = n - 1
    const vid = ids[victim]
    const others = pollers.filter((_, i) => i !== victim)
    const cutAt = Date.now()
    await net.cut(victim)
    await waitUntil('the cut host dead everywhere', () => others.every((p) => p.view.get(vid)?.startsWith('dead')), 30_000)
    result.suspectMs = Math.max(...others.map((p) => firstTime(p, cutAt, (v) => v.get(vid)?.startsWith('suspect') || v.get(vid)?.startsWith('dead')))) - cutAt
    result.deadMs = Math.max(...others.map((p) => firstTime(p, cutAt, (v) => v.get(vid)?.startsWith('dead')))) - cutAt
    process.stdout.write(`  link cut: suspect everywhere after ${result.suspectMs} ms, dead after ${result.deadMs} ms\n`)
    const healAt = Date.now()
    await net.heal(victim)
    await waitUntil('reconvergence', () => pollers.every((p, i) => complete(i, p.view)), 60_000)
    result.reconvergeMs = Math.max(...pollers.map((p, i) => firstTime(p, healAt, (v) => complete(i, v)))) - healAt
    process.stdout.write(`  healed: all views agree again after ${result.reconvergeMs} ms\n`)

    await sleep(2000)
    const flapAt = Date.now()
    await net.cut(victim)
    await sleep(1000)
    await net.heal(victim)
    await sleep(6000)
    result.flapEvicted = others.some((p) => p.history.some((h) => h.t >= flapAt && h.view.get(vid)?.startsWith('dead')))
    result.flapSuspected = others.some((p) => p.history.some((h) => h.t >= flapAt && h.view.get(vid)?.startsWith('suspect')))
    process.stdout.write(`  1 s flap: evicted ${result.flapEvicted ? 'YES' : 'nobody'}${result.flapSuspected ? ' (suspected briefly)' : ''}\n`)
  } finally {
    for (const p of pollers) p.child.kill('SIGKILL')
    await Promise.all(agents.map((a) => a.kill()))
    await net.destroy()
    await rm(dir, { recursive: true, force: true })
  }
  return result
}

/** 10,000 runner-state updates spread over 20 peers' entries, all synced into one document. */
function docGrowth () {
  const peers = Array.from({ length: 20 }, (_, i) => new ClusterDoc(`peer-${String(i).padStart(2, '0')}`))
  const observer = new ClusterDoc('observer')
  for (const p of peers) p.onLocalUpdate((u) => { observer.applyRemote(u, p.peerId) })
  const record = (p, state, i) => ({
    peerId: p.peerId, name: p.peerId, version: '0.1.0', protocol: 1, addrs: ['/ip4/10.0.0.1/tcp/4778'], api: '127.0.0.1:11435',
    hardware: { cpus: 16, memBytes: 64e9, platform: 'linux', arch: 'x64' },
    models: [{ name: 'llama-3-8b', sizeBytes: 4.9e9, digest: 'a'.repeat(64), format: 'gguf' }],
    runners: [{ id: `${p.peerId}-0`, kind: 'llama-server', model: 'llama-3-8b', state, slots: 4 }],
    startedAt: 1, updatedAt: i
  })
  peers.forEach((p, i) => p.setSelf(record(p, 'ready', i)))
  const steady = observer.snapshot().length
  const states = ['ready', 'busy', 'loading', 'ready', 'failed', 'starting']
  for (let i = 0; i < 10_000; i++) {
    const p = peers[i % peers.length]
    p.setSelf(record(p, states[i % states.length], i))
  }
  const after = observer.snapshot().length
  return { steady, after, ratio: after / steady }
}

const results = []
for (const n of sizes) results.push(await benchN(n))
const doc = docGrowth()

process.stdout.write('\n| N | converge after last start | cut: suspect | cut: dead | reconverge after heal | 1 s flap | idle bytes/s sent per agent |\n|---|---|---|---|---|---|---|\n')
for (const r of results) {
  process.stdout.write(`| ${r.n} | ${r.convergeMs} ms | ${r.suspectMs} ms | ${r.deadMs} ms | ${r.reconvergeMs} ms | ${r.flapEvicted ? 'evicted!' : 'nobody evicted'} | ${r.idleBytesPerSecPerAgent} |\n`)
}
process.stdout.write(`\ncluster document, 20 peers: ${doc.steady} bytes at steady state, ${doc.after} bytes after 10,000 runner updates (x${doc.ratio.toFixed(2)})\n`)
