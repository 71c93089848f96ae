#!/usr/bin/env node
// Split placement (issue 20), with real agents, llama-server and rpc-server in network
// namespaces joined by a bridge. The model is the fixtures' TINY_SPLIT_MODEL (4 blocks, every
// block matrix above llama.cpp's 10 MiB rpc cache threshold); each host's model memory is set in
// its config so that it fits no one host: host A (the file, the coordinator) holds 2 blocks, a
// member (B, or D once B is gone) the other 2, C is an entry with no room. llama-server and
// rpc-server run with 1 thread each (`-t 1`: the machine has 2 shared cores).
//
// 1. tokens/s of a streamed chat completion (max_tokens fixed, ignore_eos, same prompt): the
//    decode rate llama-server reports (timings.predicted_per_second), and max_tokens over the
//    time from the request to the stream's end seen by the client:
//      mesh    the split the agents made, asked at the coordinator's agent (rpc over the mesh
//              tunnel: libp2p stream, encrypted)
//      direct  the same split without the mesh: a llama-server started here in A's namespace
//              with the agent's flags (splitArgs) and `--rpc <B's ip>:<port>` to an rpc-server
//              started here in B's namespace bound to B's address (plain TCP over the bridge)
//      single  the whole model in one llama-server (no rpc)
//    the modes take turns, one run each per round; each round starts on a fresh split (the
//    reload of 2.), so that every round measures the same path; a mesh run cut short (the
//    member's rpc-server restarted under it, as an earlier build's TCP health check did) is run
//    again on a new split and counted.
// 2. load of the split: time to ready and bytes the coordinator sent to the member (its
//    agent's /admin/placements tunnels[].bytesSent), with the member's rpc cache on (default)
//    and off (`rpcServer: { cache: false }`). first = a new split (request, plan, the member's
//    rpc-server, tunnel, load) onto a member with an empty cache, ready = from the request;
//    reload = kill -9 of the coordinator's llama-server (pid from /admin/runners), then either
//    its runner starts it again through the same tunnels (`restart`, ready = from the kill, its
//    backoff included), or the split ends with it and a request at C plans it again onto the
//    same member (`re-plan`: a new rpc-server that finds the tensors in its disk cache, new
//    tunnels; measured as a first load). `load` = from the process spawned to ready.
// 3. time from a member's death to the next 200 at the entry C (chat completions of 1 token
//    sent one after another): kill -9 of the member's rpc-server, kill -9 of the member's agent
//    (a spare host with room takes its blocks; the killed agent is started again before the
//    next run, so the runs alternate between B and D). Each run starts on a fresh split.
// Every agent and process runs on this machine (one clock); requests are sent from inside the
// namespaces by one small node process per namespace.
// Needs root (network namespaces).
// Usage: npx tsc -b && node scripts/bench-split.mjs [--runs 3] [--max-tokens 128] [--llama-args='--poll 0']
import '../packages/kit/dist/polyfill.js'
import { link, copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'
import {
  TINY_SPLIT_MODEL, TestNetwork, cleanupStaleTestNetworks, ensureLlamaCpp, ensureTinyModel, netnsAvailable, netnsUnavailableReason, runLlmesh, startAgentProcess, waitFor
} from '../packages/fixtures/dist/index.js'
import { describeModel } from '../packages/runners/dist/index.js'
import { splitArgs } from '../packages/runners/dist/llama-server.js'
import { RUNNER_OVERHEAD_BYTES, footprint } from '../packages/scheduler/dist/index.js'

const { values } = parseArgs({ options: { runs: { type: 'string', default: '3' }, 'max-tokens': { type: 'string', default: '128' }, 'llama-args': { type: 'string', default: '' } } })
// further llama-server flags for every mode (the agents' llamaServer.extraArgs too), e.g. '--poll 0'
const LLAMA_ARGS = values['llama-args'].split(' ').filter((x) => x !== '')
const RUNS = Number(values.runs)
const MAX_TOKENS = Number(values['max-tokens'])
if (!(RUNS >= 1) || !(MAX_TOKENS >= 2)) throw new Error('--runs must be >= 1 and --max-tokens >= 2')
if (!netnsAvailable()) throw new Error(`bench-split needs network namespaces: ${netnsUnavailableReason()}`)

const CTX = 2048
const SLOTS = 2
const MODEL = 'split'
const PROMPT = 'Write a long story about a lighthouse keeper.'
/** ports of the processes this script starts itself, inside namespaces it made */
const DIRECT_PORT = 18181
const SINGLE_PORT = 18182
const RPC_PORT = 50052
const A = 0 // the file, the coordinator
const B = 1 // a member
const D = 2 // the spare member
const C = 3 // the entry, no room

const log = (line) => { process.stderr.write(`[bench-split] ${line}\n`) }
const sleep = async (ms) => await new Promise((resolve) => setTimeout(resolve, ms))
const median = (xs) => { const s = [...xs].sort((x, y) => x - y); const m = Math.floor(s.length / 2); return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2 }
const alive = (pid) => { try { process.kill(pid, 0); return true } catch { return false } }
const killPid = (pid) => { if (pid != null && alive(pid)) { try { process.kill(pid, 'SIGKILL') } catch {} } }

const facts = { cores: cpus().length, cpu: cpus()[0]?.model ?? '?', loadStart: loadavg() }
const build = await ensureLlamaCpp(log)
const modelFile = await ensureTinyModel(log, TINY_SPLIT_MODEL)

/**
 * One node process inside a namespace that runs the HTTP requests it is sent on stdin (JSON
 * lines) and answers on stdout: requests then leave from that host, with no process start each.
 */
const WORKER = `
import { createInterface } from 'node:readline'
const now = () => performance.timeOrigin + performance.now()
const out = (o) => process.stdout.write(JSON.stringify(o) + '\\n')
createInterface({ input: process.stdin }).on('line', async (line) => {
  const c = JSON.parse(line)
  const t0 = now()
  try {
    const signal = AbortSignal.timeout(c.timeoutMs)
    const r = await fetch(c.url, c.body == null ? { signal } : { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(c.body), signal })
    if (!c.stream || r.status !== 200) { out({ id: c.id, status: r.status, text: await r.text(), t0, tEnd: now() }); return }
    const dec = new TextDecoder()
    let buf = ''; let tokens = 0; let tFirst; let tLast; let done = false; let timings; let error
    for await (const chunk of r.body) {
      buf += dec.decode(chunk, { stream: true })
      for (let i; (i = buf.indexOf('\\n')) >= 0;) {
        const l = buf.slice(0, i).trim(); buf = buf.slice(i + 1)
        if (!l.startsWith('data: ')) continue
        const d = l.slice(6)
        if (d === '[DONE]') { done = true; continue }
        const j = JSON.parse(d)
        if (j.error != null) error = JSON.stringify(j.error)
        if (j.timings != null) timings = j.timings
        const delta = j.choices?.[0]?.delta
        if (delta != null && typeof delta.content === 'string') { tokens++; const t = now(); tFirst ??= t; tLast = t }
      }
    }
    out({ id: c.id, status: 200, t0, tFirst, tLast, tEnd: now(), tokens, done, timings, error })
  } catch (e) { out({ id: c.id, status: 0, text: String(e?.message ?? e), t0, tEnd: now() }) }
})
`

class Worker {
  constructor (net, i) {
    this.child = net.exec(i, process.execPath, ['--input-type=module', '-e', WORKER], { stdio: ['pipe', 'pipe', 'pipe'] })
    this.pending = new Map()
    this.next = 0
    createInterface({ input: this.child.stdout }).on('line', (line) => {
      const r = JSON.parse(line)
      this.pending.get(r.id)?.(r)
      this.pending.delete(r.id)
    })
  }

  async send (cmd) {
    const id = this.next++
    return await new Promise((resolve) => {
      this.pending.set(id, resolve)
      this.child.stdin.write(JSON.stringify({ id, timeoutMs: 30_000, ...cmd }) + '\n')
    })
  }

  async get (url, timeoutMs = 10_000) {
    const r = await this.send({ url, timeoutMs })
    if (r.status !== 200) throw new Error(`GET ${url}: ${r.status} ${r.text}`)
    return JSON.parse(r.text)
  }
}

const dir = await mkdtemp(join(tmpdir(), 'llmesh-bench-split-'))
let net
const agents = [] // by host index
const workers = []
const extra = [] // processes this script started itself (direct llama-servers, rpc-server)
const runnerPids = new Set() // runner processes seen, killed by id at the end should their agent leave them
const configs = []

async function startHost (i, name, config) {
  const host = net.hosts[i]
  const modelDir = join(dir, `models-${name}`)
  await mkdir(modelDir, { recursive: true })
  if (i === A) await link(modelFile, join(modelDir, `${MODEL}.gguf`)).catch(async () => { await copyFile(modelFile, join(modelDir, `${MODEL}.gguf`)) })
  const configFile = join(dir, `${name}.json`)
  configs[i] = config
  await writeFile(configFile, JSON.stringify({ llamaServer: { ctxSize: CTX, slots: SLOTS, threads: 1, extraArgs: LLAMA_ARGS }, ...config, rpcServer: { threads: 1, ...config.rpcServer } }))
  const boot = i === A ? [] : ['--bootstrap', `/ip4/${net.hosts[A].ip}/tcp/4778/p2p/${agents[A].info.peerId}`]
  agents[i] = await startAgentProcess({
    name,
    dataDir: join(dir, name),
    netns: host.name,
    args: [
      '--listen', `/ip4/${host.ip}/tcp/4778`, '--api-port', '0', '--log-level', 'warn', '--cluster', 'bench-split',
      '--cluster-key', join(dir, 'cluster.key'), '--config', configFile, '--llama-server', build.llamaServer, '--model-dir', modelDir, ...boot
    ]
  })
  return agents[i]
}

const api = (i, path) => `${agents[i].info.api}${path}`
const viewOf = async (i) => await workers[i].get(api(i, '/mesh/view'))
const runnersOf = async (i) => {
  const { runners } = await workers[i].get(api(i, '/admin/runners'))
  for (const r of runners) if (r.pid != null) runnerPids.add(r.pid)
  return runners
}
const placementsOf = async (i) => (await workers[i].get(api(i, '/admin/placements'))).placements
const coordinatorRunner = async () => (await runnersOf(A)).find((r) => r.kind === 'llama-server' && r.model === MODEL)
const chatBody = (extraBody) => ({ model: MODEL, messages: [{ role: 'user', content: PROMPT }], ...extraBody })
const chatOnce = async (i, timeoutMs = 30_000) => await workers[i].send({ url: api(i, '/v1/chat/completions'), body: chatBody({ max_tokens: 1 }), timeoutMs })

async function allConnected (hosts) {
  for (const i of hosts) {
    await waitFor(`host ${i} to see ${hosts.length} connected hosts`, async () => {
      const v = await viewOf(i)
      const live = v.nodes.filter((n) => n.state === 'alive' && n.connected)
      return hosts.every((h) => live.some((n) => n.peerId === agents[h].info.peerId))
    }, 60_000, 250)
  }
}

/** The member (host index) of the split when it is ready (coordinator's runner too), in C's view; else undefined. */
async function splitNow () {
  const v = await viewOf(C)
  const co = v.placements.find((p) => p.model === MODEL && p.split != null && p.reason !== 'split' && p.state === 'ready')
  const memberId = co?.split?.hosts.find((h) => h.peerId !== co.peerId)?.peerId
  if (memberId == null || !v.placements.some((p) => p.model === MODEL && p.reason === 'split' && p.peerId === memberId && p.state === 'ready')) return undefined
  const r = await coordinatorRunner()
  if (r?.state !== 'ready') return undefined
  const i = agents.findIndex((x) => x?.info.peerId === memberId)
  return i >= 0 ? i : undefined
}

async function readySplit () {
  return await waitFor('a ready split', splitNow, 120_000, 250).catch(async (err) => { await diagnose(); throw err })
}

/** Whether no part of a split is left: no coordinator's runner, no member's placement. */
async function splitGone () {
  if (await coordinatorRunner() != null) return false
  for (const i of [B, D]) {
    const a = agents[i]
    if (a == null || a.child.exitCode != null || a.child.signalCode != null) continue
    if ((await placementsOf(i)).some((x) => x.model === MODEL)) return false
  }
  return true
}

/**
 * The member of a ready split: the one there is, or, when the split ended (the member's
 * rpc-server restarted under it, see the header), a new one planned by a
 * request at C once every part of the old one is gone (a member still holding its part of an
 * ended split has no room for the new one: 507).
 */
async function ensureSplit () {
  const state = await waitFor('a ready split or none at all', async () => {
    const m = await splitNow()
    if (m != null) return { member: m }
    return (await splitGone()) ? { gone: true } : undefined
  }, 120_000, 100).catch(async (err) => { await diagnose(); throw err })
  if (state.member != null) return state.member
  const r = await chatOnce(C, 300_000)
  if (r.status !== 200) throw new Error(`request for a new split: ${r.status} ${r.text}`)
  return await readySplit()
}

/** Tunnel bytes the coordinator sent to `member` so far. */
async function bytesTo (member) {
  const p = (await placementsOf(A)).find((x) => x.model === MODEL)
  return p?.tunnels?.find((t) => t.peerId === agents[member].info.peerId)?.bytesSent ?? 0
}

/** The load of a new split as the coordinator's placement recorded it. */
async function firstLoad (member) {
  const p = await waitFor('the coordinator\'s placement timings', async () => {
    const x = (await placementsOf(A)).find((q) => q.model === MODEL)
    return x?.timings?.readyAt != null ? x : undefined
  }, 60_000, 250)
  const t = p.timings
  return { askedAt: t.askedAt, ready: t.readyAt - t.askedAt, load: t.readyAt - (t.spawnedAt ?? t.askedAt), bytes: p.tunnels.find((x) => x.peerId === agents[member].info.peerId)?.bytesSent ?? 0 }
}

/**
 * kill -9 of the coordinator's llama-server, then its next load. Either its runner starts it
 * again through the same tunnels (`restart`: ready is from the kill), or the split ends with it
 * and the next request at C plans it again (`re-plan`: a new rpc-server on the member, new
 * tunnels; ready is from that request, as for a first load).
 */
async function reload (expect) {
  const member = await ensureSplit()
  if (expect != null && member !== expect) throw new Error(`the split is on ${agents[member].name}, not ${agents[expect].name}`)
  const before = await coordinatorRunner()
  const bytes0 = await bytesTo(member)
  const t0 = Date.now()
  process.kill(before.pid, 'SIGKILL')
  let seen
  const next = await waitFor('the coordinator\'s llama-server to start again or its split to end', async () => {
    const r = await coordinatorRunner()
    if (r?.pid != null && r.pid !== before.pid) seen ??= Date.now()
    if (r?.state === 'ready' && r.pid != null && r.pid !== before.pid) return { how: 'restart' }
    return (await splitGone()) ? { how: 're-plan' } : undefined
  }, 120_000, 100).catch(async (err) => { await diagnose(); throw err })
  if (next.how === 'restart') {
    const t1 = Date.now()
    return { how: next.how, member, ready: t1 - t0, load: t1 - (seen ?? t1), bytes: (await bytesTo(member)) - bytes0 }
  }
  const now = await ensureSplit()
  if (expect != null && now !== expect) throw new Error(`the split moved from ${agents[expect].name} to ${agents[now].name}`)
  return { how: next.how, member: now, ...(await firstLoad(now)) }
}

/** What the hosts say, on stderr, when a wait failed. */
async function diagnose () {
  for (const i of [A, B, D]) {
    if (agents[i] == null) continue
    log(`--- ${agents[i].name}: runners ${JSON.stringify(await runnersOf(i).catch((e) => e.message))}`)
    log(`--- ${agents[i].name}: placements ${JSON.stringify(await placementsOf(i).catch((e) => e.message))}`)
    log(`--- ${agents[i].name}: sockets\n${(await net.run(i, 'ss', ['-tnp'], 5000)).stdout}`)
    log(`--- ${agents[i].name}: log tail\n${agents[i].output().split('\n').slice(-15).join('\n')}`)
  }
}

/** Time from `kill` to the next 200 at the entry, requests sent one after another. */
async function untilAnswer (kill) {
  const t0 = Date.now()
  await kill()
  let tries = 0
  for (;;) {
    tries++
    const r = await chatOnce(C, 60_000)
    if (r.status === 200) return { ms: r.tEnd - t0, tries, t0 }
    if (Date.now() - t0 > 180_000) throw new Error(`no answer ${Date.now() - t0} ms after the kill; last: ${r.status} ${r.text?.slice(0, 300)}`)
    await sleep(100)
  }
}

/** One streamed completion at `url` from host i; decode tokens/s seen by the client. */
async function streamRate (i, url, model) {
  const r = await workers[i].send({ url, stream: true, body: { ...chatBody({ max_tokens: MAX_TOKENS, ignore_eos: true, stream: true }), model }, timeoutMs: 300_000 })
  if (r.status !== 200 || r.error != null || !r.done) await diagnose()
  if (r.status !== 200 || r.error != null || !r.done) throw new Error(`stream at ${url}: ${r.status} ${r.error ?? r.text ?? 'no [DONE]'}`)
  if (r.timings?.predicted_n !== MAX_TOKENS) throw new Error(`stream at ${url}: ${r.timings?.predicted_n} tokens predicted, not ${MAX_TOKENS}`)
  return { rate: r.timings.predicted_per_second, wall: MAX_TOKENS / ((r.tEnd - r.t0) / 1000) }
}

async function waitHealthy (i, port) {
  await waitFor(`llama-server on port ${port} in host ${i}`, async () => {
    const r = await workers[i].send({ url: `http://127.0.0.1:${port}/health`, timeoutMs: 2000 })
    return r.status === 200
  }, 180_000, 250)
}

function spawnExtra (i, bin, args, env = {}) {
  const child = net.exec(i, bin, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } })
  let tail = ''
  child.stderr.on('data', (d) => { tail = (tail + d.toString()).slice(-2000) })
  extra.push(child)
  return { child, tail: () => tail }
}

const fmt = (x, d = 0) => (x == null || Number.isNaN(x) ? '-' : x.toFixed(d))
const stats = (xs, d = 0) => `${fmt(median(xs), d)} (${fmt(Math.min(...xs), d)}..${fmt(Math.max(...xs), d)})`
const mb = (b) => b / 1e6

try {
  await cleanupStaleTestNetworks()
  net = await TestNetwork.create({ hosts: 4 })
  for (let i = 0; i < 4; i++) workers[i] = new Worker(net, i)
  await runLlmesh(['keygen', '--out', join(dir, 'cluster.key')])
  const info = (await describeModel(modelFile, MODEL)).info
  const f = footprint(info, CTX)
  const block = info.bytesPerLayer + f.kvBytes / info.layers
  const rest = (info.otherBytes ?? 0) + RUNNER_OVERHEAD_BYTES
  const half = Math.floor(block / 2)
  const memberMem = { placement: { memoryBytes: Math.floor(RUNNER_OVERHEAD_BYTES + 2 * block + half) } }
  const memberWeights = 2 * info.bytesPerLayer
  log(`model ${modelFile}: ${info.layers} blocks of ${fmt(mb(info.bytesPerLayer), 1)} MB, ${fmt(mb(info.otherBytes ?? 0), 1)} MB besides`)

  // ---- the split over the mesh: A coordinates, B the member (D starts later: B is the only choice)
  log('starting agents A (coordinator), B (member), C (entry)')
  await startHost(A, 'host-a', { placement: { memoryBytes: Math.floor(rest + 2 * block + half) } })
  await Promise.all([startHost(B, 'host-b', memberMem), startHost(C, 'host-c', { placement: { memoryBytes: 1 } })])
  await allConnected([A, B, C])
  log('first request at C: the split is planned and loaded')
  const cold = await chatOnce(C, 300_000)
  if (cold.status !== 200) throw new Error(`first request: ${cold.status} ${cold.text}`)
  if (await readySplit() !== B) throw new Error('the split is not A + B')
  const loadOnFirst = await firstLoad(B)
  log(`  first load (cache on): ${loadOnFirst.ready} ms, ${fmt(mb(loadOnFirst.bytes), 1)} MB sent`)
  const agentRunner = await coordinatorRunner()
  const agentArgs = (await readFile(`/proc/${agentRunner.pid}/cmdline`, 'utf8')).split('\0').filter((x) => x !== '')
  log(`  the agent's llama-server: ${agentArgs.slice(1).join(' ')}`)

  // ---- 1. tokens/s: mesh vs direct vs single
  log('starting the direct split (rpc-server in B on its address, llama-server in A) and the single llama-server in A')
  const common = ['-m', modelFile, '--host', '127.0.0.1', '--parallel', String(SLOTS), '-c', String(CTX), '--metrics', '-t', '1', ...LLAMA_ARGS]
  const rpcCache = join(dir, 'direct-rpc-cache')
  const rpc = spawnExtra(B, build.rpcServer, ['-H', net.hosts[B].ip, '-p', String(RPC_PORT), '-t', '1', '-c'], { LLAMA_CACHE: rpcCache })
  await waitFor('the direct rpc-server', async () => (await net.run(A, 'bash', ['-c', `exec 3<>/dev/tcp/${net.hosts[B].ip}/${RPC_PORT}`], 3000)).code === 0, 30_000, 250)
  const directArgs = [...common, '--alias', MODEL, '--port', String(DIRECT_PORT), '--rpc', `${net.hosts[B].ip}:${RPC_PORT}`, ...splitArgs([2])]
  log(`  direct llama-server: ${directArgs.join(' ')}`)
  const direct = spawnExtra(A, build.llamaServer, directArgs, { GGML_NO_BACKTRACE: '1' })
  await waitHealthy(A, DIRECT_PORT).catch((err) => { throw new Error(`${err.message}\n${direct.tail()}\nrpc-server: ${rpc.tail()}`) })
  const single = spawnExtra(A, build.llamaServer, [...common, '--alias', MODEL, '--port', String(SINGLE_PORT)])
  await waitHealthy(A, SINGLE_PORT).catch((err) => { throw new Error(`${err.message}\n${single.tail()}`) })

  const modes = {
    mesh: api(A, '/v1/chat/completions'),
    direct: `http://127.0.0.1:${DIRECT_PORT}/v1/chat/completions`,
    single: `http://127.0.0.1:${SINGLE_PORT}/v1/chat/completions`
  }
  const rates = { mesh: [], direct: [], single: [] }
  const walls = { mesh: [], direct: [], single: [] }
  // every round starts on a fresh split, made by the reload of figure 2 (see the header), and a
  // mesh run cut short is run once more on a new split (counted)
  const reloadsOn = []
  let cut = 0
  const stream = async (mode, url) => {
    try {
      return await streamRate(A, url, MODEL)
    } catch (err) {
      if (mode !== 'mesh') throw err
      cut++
      log(`  a mesh run was cut short (${err.message.split('\n')[0].slice(0, 200)}): once more on a new split`)
      await ensureSplit()
      return await streamRate(A, url, MODEL)
    }
  }
  // one warm-up each (first graph, page cache), not counted
  for (const [mode, url] of Object.entries(modes)) await stream(mode, url)
  for (let run = 0; run < RUNS; run++) {
    const re = await reload(B)
    reloadsOn.push(re)
    log(`  reload ${run + 1}/${RUNS} (cache on, ${re.how}): ${re.ready} ms, ${fmt(mb(re.bytes), 2)} MB sent`)
    for (const [mode, url] of Object.entries(modes)) {
      const r = await stream(mode, url)
      rates[mode].push(r.rate)
      walls[mode].push(r.wall)
      log(`  run ${run + 1}/${RUNS} ${mode}: ${fmt(r.rate, 1)} tokens/s decoding, ${fmt(r.wall, 1)} tokens/s from request to end`)
    }
  }
  for (const x of extra) killPid(x.pid)
  const ratios = rates.mesh.map((m, k) => m / rates.direct[k])

  // ---- 3. a member's death
  log('starting D (the spare member)')
  await startHost(D, 'host-d', memberMem)
  await allConnected([A, B, C, D])
  const rpcDeaths = []
  const rpcLoads = []
  /** From the request that planned the split now ready to its ready, ms, if it was planned after `since`. */
  const newSplitLoad = async (since) => {
    const l = await firstLoad(await readySplit())
    return l.askedAt >= since ? l.ready : undefined
  }
  for (let run = 0; run < RUNS; run++) {
    // a fresh split each time, so that the rpc-server's own restart (see above) is not what is measured
    const { member } = await reload()
    await sleep(1000)
    const r = (await runnersOf(member)).find((x) => x.kind === 'rpc-server' && x.model === MODEL)
    if (r?.pid == null) throw new Error(`no rpc-server on host ${member}`)
    const t = await untilAnswer(async () => { process.kill(r.pid, 'SIGKILL') })
    rpcDeaths.push(Math.round(t.ms))
    rpcLoads.push(await newSplitLoad(t.t0))
    log(`  kill -9 of ${agents[member].name}'s rpc-server: answered again after ${Math.round(t.ms)} ms (${t.tries} requests), ${rpcLoads.at(-1) ?? '-'} ms of it the new split's start`)
  }
  const agentDeaths = []
  const agentLoads = []
  for (let run = 0; run < RUNS; run++) {
    const { member } = await reload()
    await sleep(1000)
    const t = await untilAnswer(async () => { await agents[member].kill() })
    agentDeaths.push(Math.round(t.ms))
    const now = await readySplit()
    agentLoads.push(await newSplitLoad(t.t0))
    log(`  kill -9 of ${agents[member].name}'s agent: answered again after ${Math.round(t.ms)} ms (${t.tries} requests), ${agentLoads.at(-1) ?? '-'} ms of it the new split's start; split now A + ${agents[now].name}`)
    const name = agents[member].name
    agents[member] = undefined
    await startHost(member, name, configs[member])
    await allConnected([A, B, C, D])
  }

  // ---- 2. the cache off: the spare restarted with it off, the member killed, the split moves to the spare
  const member = await ensureSplit()
  const spare = member === B ? D : B
  log(`restarting ${agents[spare].name} with its rpc cache off, then kill -9 of ${agents[member].name}'s agent`)
  const spareName = agents[spare].name
  await agents[spare].stop(10_000)
  agents[spare] = undefined
  await startHost(spare, spareName, { ...memberMem, rpcServer: { cache: false } })
  await allConnected([A, B, C, D])
  await sleep(2000)
  await untilAnswer(async () => { await agents[member].kill() })
  if (await readySplit() !== spare) throw new Error('the split did not move to the spare')
  const loadOffFirst = await firstLoad(spare)
  log(`  first load (cache off): ${loadOffFirst.ready} ms, ${fmt(mb(loadOffFirst.bytes), 1)} MB sent`)
  const reloadsOff = []
  for (let run = 0; run < RUNS; run++) {
    const r = await reload(spare)
    reloadsOff.push(r)
    log(`  reload ${run + 1}/${RUNS} (cache off, ${r.how}): ${r.ready} ms, ${fmt(mb(r.bytes), 2)} MB sent`)
  }

  // ---- the table
  const pct = (b) => (100 * b) / memberWeights
  const out = []
  out.push(`split placement of ${MODEL} (TINY_SPLIT_MODEL, ${info.layers} blocks, ${fmt(mb(info.sizeBytes ?? 0), 0)} MB) over netns hosts, 2 blocks each; -t 1${LLAMA_ARGS.length > 0 ? ` ${LLAMA_ARGS.join(' ')}` : ''}; ${RUNS} runs: median (min..max)`)
  out.push(`machine: ${facts.cores} cores (${facts.cpu}), load average ${facts.loadStart.map((x) => x.toFixed(2)).join(' ')} at start, ${loadavg().map((x) => x.toFixed(2)).join(' ')} at end; llama.cpp ${build.llamaServer.split('/').find((s) => s.startsWith('llama.cpp-')) ?? ''}`)
  out.push('')
  out.push(`1. tokens/s, streamed chat completion, max_tokens ${MAX_TOKENS}, ignore_eos, sent from A's namespace`)
  out.push('                                                      decoding (llama-server)   request to end (client)')
  const rateRow = (label, mode) => out.push(`   ${label.padEnd(51)}${stats(rates[mode], 1).padEnd(26)}${stats(walls[mode], 1)}`)
  rateRow('split over the mesh (agent at A, rpc via tunnel)', 'mesh')
  rateRow('split over direct TCP (llama-server --rpc B:port)', 'direct')
  rateRow('whole model on one host (no rpc)', 'single')
  out.push(`   mesh / direct, decoding, per round                 ${stats(ratios, 2)}   [target >= 0.80]`)
  out.push(`   mesh runs cut short by the member's rpc-server restart and run again: ${cut}`)
  out.push('')
  out.push(`2. load of the split; bytes coordinator -> member; the member's 2 blocks weigh ${fmt(mb(memberWeights), 1)} MB`)
  out.push(`   reload: ${[...new Set([...reloadsOn, ...reloadsOff].map((r) => r.how))].join(', ')} (see the script's header); ready: from the request (re-plan) or the kill (restart)`)
  out.push('   cache  load                   ready ms              load ms               MB sent                  % of blocks')
  const row = (cache, what, rs) => out.push(`   ${cache.padEnd(6)} ${what.padEnd(22)} ${stats(rs.map((r) => r.ready)).padEnd(21)} ${stats(rs.map((r) => r.load)).padEnd(21)} ${stats(rs.map((r) => mb(r.bytes)), 2).padEnd(24)} ${stats(rs.map((r) => pct(r.bytes)), 2)}`)
  row('on', 'first (1 run)', [loadOnFirst])
  row('on', 'reload (kill -9 coord)', reloadsOn)
  row('off', 'first (1 run)', [loadOffFirst])
  row('off', 'reload (kill -9 coord)', reloadsOff)
  out.push(`   reload with the cache on sends ${fmt(pct(median(reloadsOn.map((r) => r.bytes))), 2)}% of the member's block weights   [target < 1%]`)
  out.push('')
  out.push('3. a member\'s death to the next 200 at the entry C, ms (cache on); of it, the new split\'s start (request to ready)')
  const known = (xs) => xs.filter((x) => x != null)
  out.push(`   kill -9 of the member's rpc-server  ${stats(rpcDeaths)}   runs: ${rpcDeaths.join(' ')}   [target <= 15000]   start: ${known(rpcLoads).length > 0 ? stats(known(rpcLoads)) : '-'}`)
  out.push(`   kill -9 of the member's agent       ${stats(agentDeaths)}   runs: ${agentDeaths.join(' ')}   [target <= 15000]   start: ${known(agentLoads).length > 0 ? stats(known(agentLoads)) : '-'}`)
  console.log(out.join('\n'))
} finally {
  for (const w of workers) killPid(w?.child.pid)
  for (const x of extra) killPid(x.pid)
  await Promise.all(agents.map(async (a) => { await a?.kill() }))
  for (const pid of runnerPids) killPid(pid)
  await net?.destroy().catch((err) => { log(`network: ${err.message}`) })
  await rm(dir, { recursive: true, force: true })
}
