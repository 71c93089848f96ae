#!/usr/bin/env node
// Mesh convergence benchmark: N agents, one per network namespace on a bridge, found by mDNS
// alone. Prints, for each N: time from the last agent's start to full convergence, failure
// detection after a link cut (suspect, dead), reconvergence after heal, whether a 1 s flap
// evicts anyone, wire bytes per agent per second at idle (eth0 tx counters), and the cluster
// document's size after 10,000 runner updates. Times come from the agents' own logs (state
// transitions, records learned), so measuring adds no load. Needs root (ip netns).
// Usage: node scripts/bench-mesh.mjs [N ...]   (default: 3 20)
import '@llmesh/kit/polyfill'
import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { TestNetwork, cleanupStaleTestNetworks, netnsAvailable, netnsUnavailableReason, runLlmesh, startAgentProcess } from '@llmesh/fixtures'
import { ClusterDoc } from '@llmesh/state'
import { loadOrCreateKey, peerIdOfKey, recordSigner, recordVerifier } from '@llmesh/mesh'

const sizes = process.argv.slice(2).map(Number).filter((n) => n > 1)
if (sizes.length === 0) sizes.push(3, 20)
if (!netnsAvailable()) {
  console.error(`bench-mesh needs network namespaces: ${netnsUnavailableReason()}`)
  process.exit(1)
}
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** The agent's own log events (pino JSON lines), with the machine clock's time of each. */
function events (agent) {
  const out = []
  for (const line of agent.output().split('\n')) {
    if (!line.startsWith('{')) continue
    try { out.push(JSON.parse(line)) } catch {}
  }
  return out
}

/** When agent `a` first, at or after `since`, logged `peer` reaching `state`. */
function stateAt (a, peer, state, since = 0) {
  return events(a).find((e) => e.time >= since && e.msg === 'member state' && e.peer === peer && e.to === state)?.time
}

/** When agent `a` had heard `peer` alive and held its record: both are needed for a full view. */
function knowsAt (a, peer, since = 0) {
  const alive = stateAt(a, peer, 'alive', since)
  const record = events(a).find((e) => e.msg === 'peer record added' && e.peer === peer)?.time ?? (since > 0 ? since : undefined)
  return alive == null || record == null ? undefined : Math.max(alive, record)
}

/** Time at which every agent in `from` knew every agent in `of` (undefined if not all yet). */
function fullViewAt (from, of, since = 0) {
  let latest = since
  for (const a of from) {
    for (const b of of) {
      if (a === b) continue
      const t = knowsAt(a, b.info.peerId, since)
      if (t == null) return undefined
      latest = Math.max(latest, t)
    }
  }
  return latest
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
  const result = { n }
  try {
    // off loopback: lab mode, one cluster key for every host, as a real LAN cluster runs
    await runLlmesh(['keygen', '--out', join(dir, 'cluster.key')])
    process.stdout.write(`\nN = ${n}: starting ${n - 1} agents at once, one per namespace ...\n`)
    const start = (i) => startAgentProcess({
      name: `h${i}`,
      dataDir: join(dir, `h${i}`),
      netns: net.hosts[i].name,
      startTimeoutMs: 120_000,
      args: ['--listen', `/ip4/${net.hosts[i].ip}/tcp/4778`, '--api-port', '0', '--cluster', 'bench', '--cluster-key', join(dir, 'cluster.key'), '--log-level', 'info']
    })
    const readyAt = (a) => events(a).find((e) => e.msg === 'agent ready')?.time
    agents.push(...await Promise.all(net.hosts.slice(0, -1).map((_, i) => start(i))))
    // agent.json is written just before the 'agent ready' line: wait for the lines too
    await waitUntil('every agent\'s ready line', () => agents.every((a) => readyAt(a) != null), 10_000)
    const firstStarts = Math.max(...agents.map(readyAt))
    await waitUntil(`${n - 1} agents to converge`, () => fullViewAt(agents, agents) != null, 120_000)
    result.coldMs = fullViewAt(agents, agents) - firstStarts
    if (process.env.BENCH_DEBUG) {
      const lag = []
      for (const a of agents) for (const b of agents) if (a !== b) lag.push([knowsAt(a, b.info.peerId) - firstStarts, a.name, b.name, a.info.peerId < b.info.peerId ? 'a dials' : 'b dials'])
      process.stdout.write(`slowest pairs: ${JSON.stringify(lag.sort((x, y) => y[0] - x[0]).slice(0, 6))}\n`)
    }
    process.stdout.write(`  ${n - 1} agents started together converged ${result.coldMs} ms after the last of them was up\n`)
    await sleep(3000)
    // the figure: one more host joins a settled mesh
    agents.push(await start(n - 1))
    await waitUntil('the last agent\'s ready line', () => readyAt(agents[n - 1]) != null, 10_000)
    const lastStart = readyAt(agents[n - 1])
    await waitUntil('full convergence', () => fullViewAt(agents, agents) != null, 120_000)
    result.convergeMs = fullViewAt(agents, agents) - lastStart
    let slowest = { t: 0 }
    for (const a of agents) for (const b of agents) {
      if (a === b) continue
      const t = knowsAt(a, b.info.peerId)
      if (t > slowest.t) slowest = { t, a: a.name, b: b.name, alive: stateAt(a, b.info.peerId, 'alive') - lastStart, record: (events(a).find((e) => e.msg === 'peer record added' && e.peer === b.info.peerId)?.time ?? 0) - lastStart }
    }
    process.stdout.write(`  converged ${result.convergeMs} ms after the last agent started (last: ${slowest.a} learning ${slowest.b}: alive at ${slowest.alive} ms, record at ${slowest.record} ms)\n`)
    if (process.env.BENCH_DEBUG) for (const a of agents) process.stdout.write(`--- ${a.name}\n${a.output().split('\n').filter((l) => !l.includes('"member state"') && !l.includes('peer record added')).slice(-8).join('\n')}\n`)

    await sleep(3000)
    const b0 = await wireBytes(net)
    const t0 = Date.now()
    await sleep(10_000)
    const b1 = await wireBytes(net)
    result.idleBytesPerSecPerAgent = Math.round((b1 - b0) / ((Date.now() - t0) / 1000) / n)
    process.stdout.write(`  idle: ${result.idleBytesPerSecPerAgent} B/s sent per agent (eth0 tx: gossip, heartbeats, mDNS, pings, TCP/IP headers)\n`)

    const victim = agents[n - 1]
    const vid = victim.info.peerId
    const others = agents.slice(0, -1)
    const cutAt = Date.now()
    await net.cut(n - 1)
    await waitUntil('the cut host dead everywhere', () => others.every((a) => stateAt(a, vid, 'dead', cutAt) != null), 30_000)
    result.suspectMs = Math.max(...others.map((a) => stateAt(a, vid, 'suspect', cutAt) ?? stateAt(a, vid, 'dead', cutAt))) - cutAt
    result.deadMs = Math.max(...others.map((a) => stateAt(a, vid, 'dead', cutAt))) - cutAt
    process.stdout.write(`  link cut: suspect everywhere after ${result.suspectMs} ms, dead after ${result.deadMs} ms\n`)
    const healAt = Date.now()
    await net.heal(n - 1)
    // the others take the victim back, and the victim takes every other back
    const healed = () => {
      const back = others.map((a) => stateAt(a, vid, 'alive', healAt))
      const seen = others.map((a) => stateAt(victim, a.info.peerId, 'alive', healAt))
      return [...back, ...seen].every((t) => t != null) ? Math.max(...back, ...seen) : undefined
    }
    await waitUntil('reconvergence', () => healed() != null, 60_000)
    result.reconvergeMs = healed() - healAt
    process.stdout.write(`  healed: all views agree again after ${result.reconvergeMs} ms\n`)

    await sleep(2000)
    const flapAt = Date.now()
    await net.cut(n - 1)
    await sleep(1000)
    await net.heal(n - 1)
    await sleep(6000)
    result.flapEvicted = others.some((a) => stateAt(a, vid, 'dead', flapAt) != null)
    result.flapSuspected = others.some((a) => stateAt(a, vid, 'suspect', flapAt) != null)
    process.stdout.write(`  1 s flap: evicted ${result.flapEvicted ? 'YES' : 'nobody'}${result.flapSuspected ? ' (suspected briefly)' : ''}\n`)
  } finally {
    await Promise.all(agents.map((a) => a.kill()))
    await net.destroy()
    await rm(dir, { recursive: true, force: true })
  }
  return result
}

/** 10,000 runner-state updates spread over 20 peers' entries, all synced into one document. */
async function docGrowth () {
  const keyDir = await mkdtemp(join(tmpdir(), 'llmesh-doc-growth-'))
  const keys = await Promise.all(Array.from({ length: 21 }, (_, i) => loadOrCreateKey(join(keyDir, `peer-${i}.key`))))
  await rm(keyDir, { recursive: true, force: true })
  const peers = keys.slice(1).map((k) => new ClusterDoc(peerIdOfKey(k), undefined, { verifier: recordVerifier(), signer: recordSigner(k) }))
  const observer = new ClusterDoc(peerIdOfKey(keys[0]), undefined, { verifier: recordVerifier() })
  for (const p of peers) p.onLocalUpdate((u) => { observer.applyRemote(u, p.peerId) })
  const record = (p, state, i) => ({
    peerId: p.peerId, name: p.peerId, version: '0.1.0', protocol: 1, addrs: [`/ip4/10.0.0.1/tcp/4778/p2p/${p.peerId}`], api: '127.0.0.1:11435',
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
const doc = await docGrowth()

process.stdout.write('\n| N | N-1 started at once: converged after | last host joins: converged after | cut: suspect | cut: dead | reconverge after heal | 1 s flap | idle bytes/s sent per agent \n|---|---|---|---|---|---|---|\n')
for (const r of results) {
  process.stdout.write(`| ${r.n} | ${r.coldMs} ms | ${r.convergeMs} ms | ${r.suspectMs} ms | ${r.deadMs} ms | ${r.reconvergeMs} ms | ${r.flapEvicted ? 'evicted!' : 'nobody evicted'} | ${r.idleBytesPerSecPerAgent} |\n`)
}
process.stdout.write(`\ncluster document, 20 peers: ${doc.steady} bytes at steady state, ${doc.after} bytes after 10,000 runner updates (x${doc.ratio.toFixed(2)})\n`)
