#!/usr/bin/env node
// Request-path benchmark on loopback with real agents:
//   0. the agent's own cost, in front of a fast runner (an in-process OpenAI server that answers
//      at once, adopted through the agent's `mlx` option): p50/p99 added latency and requests/s,
//      directly vs through a bare node proxy (the floor of any extra process hop) vs through
//      the local agent vs through a remote agent;
// then with the real llama-server (tiny model):
//   1. added latency of one short request (max_tokens 1) through the local agent and through a
//      remote agent, against llama-server directly: p50 / p99 over N requests each, on shared
//      cores and again with llama-server on a core of its own (so the runner's threads do not
//      take the agents' core: a control for how much of the added tail is co-location);
//   2. requests/s through one agent vs llama-server directly (max_tokens 1, C concurrent);
//   3. tokens/s of one long stream through the mesh vs directly (decode rate and wall-clock rate);
//   4. 3 entry agents x a burst over 3 serving hosts (2 slots each): claims-aware routing
//      (least-loaded and performance, which count every router's claims) vs a random choice
//      (with llmesh's busy answers) vs three independent pools calling the llama-servers
//      directly (the seed's uncoordinated routers) vs one central scheduler: busy answers,
//      queueing, latency.
//   5. (with --baseline DIR) this build against another: section 0's paths through agents of this
//      build and of DIR (a checkout of another commit, built with npx tsc -b) and the bare node
//      proxy, all in one run, paths in turn. Both builds' agents run with a cluster key and an API
//      key; --baseline-trust none runs DIR's without them (for a DIR from before the trust layer:
//      what trust costs).
// Usage: npx tsc -b && node scripts/bench-request.mjs [--n 1000] [--concurrency 8] [--burst 2] [--sections 0,1,2,3,4] [--runner-threads 1] [--rounds 50] [--warmup 12000] [--stream-warmup 60] [--baseline DIR [--baseline-trust same|none] --sections 5]
// (--burst is per entry agent; 2 x 3 entries = the 6 slots of the 3 hosts: routing decides whether they collide)
import '../packages/kit/dist/polyfill.js'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:http'
import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { execFileSync, spawn } from 'node:child_process'
import { request, Agent as UndiciAgent, setGlobalDispatcher } from 'undici'
import { ensureLlamaCpp, ensureTinyModel, runLlmesh, startAgentProcess, waitFor, LOOPBACK_AGENT_ARGS } from '../packages/fixtures/dist/index.js'

const { values } = parseArgs({ options: { n: { type: 'string', default: '1000' }, concurrency: { type: 'string', default: '8' }, burst: { type: 'string', default: '2' }, sections: { type: 'string', default: '0,1,2,3,4' }, 'runner-threads': { type: 'string', default: '1' }, rounds: { type: 'string', default: '50' }, warmup: { type: 'string', default: '12000' }, 'stream-warmup': { type: 'string', default: '60' }, hosts: { type: 'string', default: 'sim' }, 'service-ms': { type: 'string', default: '40' }, baseline: { type: 'string' }, 'baseline-trust': { type: 'string', default: 'same' } } })
const N = Number(values.n)
const C = Number(values.concurrency)
const BURST = Number(values.burst)
const ROUNDS = Number(values.rounds)
// requests per path before the latency sections measure: V8 goes on compiling, deoptimizing and
// recompiling the hot path for about 10,000 requests (measured through a fresh local agent in
// front of an instant runner, p99 of each block of 2,000 requests: 4.5, 2.8, 1.9, 1.3, 2.3, 2.2,
// then 0.8-0.9 ms from the 12,001st on; the episodes at 8,000-12,000 came back run after run);
// an agent in service is warm, so steady state is what these sections report
const WARMUP = Number(values.warmup)
// streams per path before section 3 measures: a stream runs the streaming code (paced reads,
// frame batches, SSE writes) about 30 times, once per 8 ms batch, so the first streams run it
// unoptimized (measured on shared cores, a 1000-token stream through a remote agent: its serving
// and entry agents spent 22 and 19 ms of CPU on it after 5 warm-up streams, 7 and 7 ms after 60,
// and it took 227 against 209 ms from first to last token; 202-205 ms directly)
const STREAM_WARMUP = Number(values['stream-warmup'])
const SECTIONS = new Set(values.sections.split(',').map(Number))
const want = (...xs) => xs.some((x) => SECTIONS.has(x))
setGlobalDispatcher(new UndiciAgent({ connections: 64, keepAliveTimeout: 30_000 }))

const progress = (line) => { process.stderr.write(`[fixtures] ${line}\n`) }
const build = await ensureLlamaCpp(progress)
const model = await ensureTinyModel(progress)
const loopback = LOOPBACK_AGENT_ARGS
// every llama-server gets --runner-threads CPU threads (default 1): on this one 2-core machine
// the runners, the agents and the load generator share the cores, and llama.cpp's default (a
// thread per core, spinning while it waits) would leave the agents none; 0 = llama-server's default
const THREADS = Number(values['runner-threads'])
const serveArgs = (slots) => ['--model', `tiny=${model}`, '--llama-server', build.llamaServer, '--slots', String(slots), ...(THREADS > 0 ? ['--threads', String(THREADS)] : [])]
const dir = await mkdtemp(join(tmpdir(), 'llmesh-bench-request-'))
const procs = []
/** other child processes of the benchmark, killed at the end whatever happens */
const children = []
/** other things to close at the end */
const closers = []
const runnerPids = []

async function getJson (url, headers = {}) { return await (await request(url, { headers })).body.json() }

async function start (name, args, bin) {
  const p = await startAgentProcess({ name, dataDir: join(dir, name), args: [...loopback, ...args], ...(bin != null ? { bin } : {}) })
  procs.push(p)
  return p
}

async function readyRunners (entry, count, headers = {}) {
  await waitFor(`${entry.name} to see ${count} ready runners`, async () => {
    const view = await getJson(`${entry.info.api}/mesh/view`, headers)
    return view.nodes.filter((n) => n.connected && n.runners.some((r) => r.state === 'ready')).length >= count
  }, 60_000)
}

async function chat (base, body, headers = {}) {
  const t0 = performance.now()
  const res = await request(`${base}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify({ model: 'tiny', ...body }) })
  const text = await res.body.text()
  if (res.statusCode !== 200) throw new Error(`${base} answered ${res.statusCode}: ${text.slice(0, 200)}`)
  return { ms: performance.now() - t0, text, headers: res.headers }
}

/** One streamed chat request: content chunks (tokens) and when the first and the last arrived, ms from the request. */
async function streamTimes (base, body) {
  const t0 = performance.now()
  const res = await request(`${base}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'tiny', ...body }) })
  if (res.statusCode !== 200) throw new Error(`${base} answered ${res.statusCode}: ${(await res.body.text()).slice(0, 200)}`)
  let tokens = 0
  let firstMs = 0
  let lastMs = 0
  let rest = ''
  for await (const chunk of res.body) {
    const now = performance.now() - t0
    const events = (rest + chunk.toString()).split('\n\n')
    rest = events.pop()
    const n = events.filter((x) => x.startsWith('data: {') && x.includes('"content"')).length
    if (n === 0) continue
    if (tokens === 0) firstMs = now
    tokens += n
    lastMs = now
  }
  return { tokens, firstMs, lastMs }
}

/** Sets the CPU affinity of every thread of these processes (Linux `taskset`); false where that is not possible. */
function pin (pids, cpus) {
  try {
    for (const pid of pids) execFileSync('taskset', ['-a', '-p', '-c', cpus, String(pid)], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

/**
 * Runs `fn` with the runner's threads on the last core and this process and `others` on the
 * rest, then gives every one of them all cores again; says so when taskset is not there.
 */
async function onOwnCore (runnerPid, others, fn) {
  const cpus = availableParallelism()
  const all = `0-${cpus - 1}`
  if (cpus < 2 || !pin([process.pid], all)) {
    console.log('   (no taskset here: the run with the runner on its own core is left out)')
    return
  }
  pin([runnerPid], String(cpus - 1))
  pin([process.pid, ...others], `0-${cpus - 2}`)
  try {
    await fn(`llama-server alone on cpu ${cpus - 1}`)
  } finally {
    pin([process.pid, runnerPid, ...others], all)
  }
}

const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * s.length))] }
const f = (x) => x.toFixed(2)
const short = { max_tokens: 1, messages: [{ role: 'user', content: 'hi' }] }

/**
 * p50 and p99 of N sequential requests per path, after `warm` requests each. The paths take
 * turns request by request, so a noisy moment of the shared machine hits them alike and the
 * differences of their percentiles are the agent's own.
 */
async function latencies (paths, body, warm, headersOf = {}) {
  const xs = Object.fromEntries(Object.keys(paths).map((name) => [name, []]))
  for (let i = 0; i < warm; i++) for (const [name, base] of Object.entries(paths)) await chat(base, body, headersOf[name])
  for (let i = 0; i < N; i++) for (const [name, base] of Object.entries(paths)) xs[name].push((await chat(base, body, headersOf[name])).ms)
  return Object.fromEntries(Object.entries(xs).map(([name, v]) => [name, { p50: pct(v, 0.5), p99: pct(v, 0.99) }]))
}

/** Prints `latencies()` as a table, each path's percentiles also as added to the `direct` path's. */
function printLatencies (heading, lat, labels) {
  console.log(heading)
  console.log('   path                         p50      p99   added p50  added p99')
  for (const [name, v] of Object.entries(lat)) {
    console.log(`   ${labels[name].padEnd(28)} ${f(v.p50).padStart(7)} ${f(v.p99).padStart(8)} ${f(v.p50 - lat.direct.p50).padStart(10)} ${f(v.p99 - lat.direct.p99).padStart(10)}`)
  }
}

/** The floor: a bare node:http + undici proxy in its own process (scripts/floor-proxy.mjs). */
async function startFloor (upstream) {
  const floorProc = spawn(process.execPath, [join(import.meta.dirname, 'floor-proxy.mjs'), upstream], { stdio: ['ignore', 'pipe', 'inherit'] })
  children.push(floorProc)
  const floorUrl = await new Promise((resolve, reject) => {
    floorProc.stdout.once('data', (d) => { resolve(String(d).trim()) })
    floorProc.once('exit', (code) => { reject(new Error(`floor proxy exited with ${code}`)) })
  })
  return { floorProc, floorUrl }
}

/**
 * An OpenAI-compatible server that answers every chat request (one token) at once or, with
 * `serviceMs`, after that long, serving at most `slots` requests at a time and queueing the
 * rest in order, as llama-server does with its slots: a host of its own for section 4, whose
 * capacity does not come out of the machine's 2 cores.
 */
async function fastRunner ({ serviceMs = 0, slots = Infinity } = {}) {
  const reply = JSON.stringify({ id: 'x', object: 'chat.completion', created: 0, model: 'fast', choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }], usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } })
  let busy = 0
  const waiting = []
  const answer = (body, res) => {
    if (body.includes('"stream":true')) {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      res.end('data: {"id":"x","object":"chat.completion.chunk","created":0,"model":"fast","choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":null}]}\n\ndata: {"id":"x","object":"chat.completion.chunk","created":0,"model":"fast","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n')
    } else {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(reply)
    }
  }
  const serve = (body, res) => {
    if (serviceMs === 0) { answer(body, res); return }
    if (busy >= slots) { waiting.push([body, res]); return }
    busy++
    setTimeout(() => {
      answer(body, res)
      busy--
      const next = waiting.shift()
      if (next != null) serve(...next)
    }, serviceMs)
  }
  const server = createServer((req, res) => {
    if (req.url === '/health') { res.end('{"status":"ok"}'); return }
    if (req.url === '/v1/models') { res.setHeader('content-type', 'application/json'); res.end('{"object":"list","data":[{"id":"fast","object":"model"}]}'); return }
    let body = ''
    req.on('data', (d) => { body += d })
    req.on('end', () => { serve(body, res) })
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { server, url: `http://127.0.0.1:${server.address().port}` }
}

try {
  // 0. the agent's own cost, in front of a runner that answers at once
  if (want(0)) {
    const fast = await fastRunner()
    const cfg = join(dir, 'fast.json')
    await writeFile(cfg, JSON.stringify({ mlx: { url: fast.url, model: 'fast', slots: 64 } }))
    const fs = await start('fast-serve', ['--config', cfg])
    const fe = await start('fast-entry', ['--bootstrap', fs.info.addrs[0]])
    await readyRunners(fe, 1)
    const { floorProc, floorUrl } = await startFloor(fast.url)
    const fastPaths = { direct: fast.url, floor: floorUrl, local: fs.info.api, remote: fe.info.api }
    const q = { model: 'fast', max_tokens: 1, messages: [{ role: 'user', content: 'hi' }] }
    printLatencies(`\n0. agent cost in front of a runner that answers at once (sequential, n=${N} per path after ${WARMUP} to warm up, paths in turn), ms`,
      await latencies(fastPaths, q, WARMUP),
      { direct: 'fast runner directly', floor: 'bare node proxy (floor)', local: 'local agent -> runner', remote: 'remote agent -> peer -> runner' })
    console.log(`   requests/s, ${C * 4} concurrent, ${N * 4} requests:`)
    for (const [name, base] of Object.entries(fastPaths)) {
      let next = 0
      const t0 = performance.now()
      await Promise.all(Array.from({ length: C * 4 }, async () => { while (next++ < N * 4) await chat(base, q) }))
      console.log(`   ${name.padEnd(8)} ${((N * 4) / ((performance.now() - t0) / 1000)).toFixed(0).padStart(6)} req/s`)
    }
    await Promise.all(procs.splice(0).map(async (p) => { await p.stop(5000) }))
    floorProc.kill('SIGTERM')
    fast.server.close()
  }

  // 5. this build side by side with another (DIR), in one run
  if (want(5)) {
    if (values.baseline == null) throw new Error('section 5 needs --baseline DIR: a checkout of another commit, built (npx tsc -b)')
    const baseTrusted = values['baseline-trust'] !== 'none'
    const baseBin = join(values.baseline, 'packages', 'cli', 'dist', 'bin.js')
    const fast = await fastRunner()
    const cfg = join(dir, 'fast.json')
    await writeFile(cfg, JSON.stringify({ mlx: { url: fast.url, model: 'fast', slots: 64 } }))
    const keyFile = join(dir, 'cluster.key')
    await runLlmesh(['keygen', '--out', keyFile])
    const keyed = ['--cluster-key', keyFile]
    // an API key on each keyed agent: with a key made, a loopback API requires it too
    // (written by this build's CLI for DIR's agents too: the key file's format predates this layout)
    const headers = {}
    for (const name of ['new-serve', 'new-entry', ...(baseTrusted ? ['base-serve', 'base-entry'] : [])]) {
      headers[name] = { authorization: `Bearer ${JSON.parse((await runLlmesh(['apikey', 'add', '--data-dir', join(dir, name), '--json'])).stdout).key}` }
    }
    const baseKeyed = baseTrusted ? keyed : []
    const bs = await start('base-serve', ['--config', cfg, ...baseKeyed], baseBin)
    const be = await start('base-entry', ['--bootstrap', bs.info.addrs[0], ...baseKeyed], baseBin)
    const ns = await start('new-serve', ['--config', cfg, ...keyed])
    const ne = await start('new-entry', ['--bootstrap', ns.info.addrs[0], ...keyed])
    await readyRunners(be, 1, headers['base-entry'])
    await readyRunners(ne, 1, headers['new-entry'])
    const { floorProc, floorUrl } = await startFloor(fast.url)
    const paths5 = { direct: fast.url, floor: floorUrl, baseLocal: bs.info.api, newLocal: ns.info.api, baseRemote: be.info.api, newRemote: ne.info.api }
    const q = { model: 'fast', max_tokens: 1, messages: [{ role: 'user', content: 'hi' }] }
    const lat = await latencies(paths5, q, WARMUP, { newLocal: headers['new-serve'], newRemote: headers['new-entry'], ...(baseTrusted ? { baseLocal: headers['base-serve'], baseRemote: headers['base-entry'] } : {}) })
    const baseNote = baseTrusted ? 'both with a cluster key and an API key' : 'this build with a cluster key and an API key, DIR without'
    printLatencies(`\n5. this build vs ${values.baseline} (${baseNote}), in front of a runner that answers at once (sequential, n=${N} per path after ${WARMUP} to warm up, paths in turn), ms`,
      lat, { direct: 'fast runner directly', floor: 'bare node proxy (floor)', baseLocal: 'local agent, DIR', newLocal: 'local agent, this build', baseRemote: 'remote agent, DIR', newRemote: 'remote agent, this build' })
    const added = (name, p) => lat[name][p] - lat.direct[p]
    for (const where of ['Local', 'Remote']) {
      console.log(`   ${where.toLowerCase()}: added p50 ${(added(`new${where}`, 'p50') / added(`base${where}`, 'p50')).toFixed(2)}x, added p99 ${(added(`new${where}`, 'p99') / added(`base${where}`, 'p99')).toFixed(2)}x of DIR's`)
    }
    await Promise.all(procs.splice(0).map(async (p) => { await p.stop(5000) }))
    floorProc.kill('SIGTERM')
    fast.server.close()
  }

  // one serving host S (llama-server, 4 slots) and one entry E without a model
  if (want(1, 2, 3)) {
    const s = await start('serve', serveArgs(4))
    const e = await start('entry', ['--bootstrap', s.info.addrs[0]])
    await readyRunners(e, 1)
    const runner = (await getJson(`${s.info.api}/admin/runners`)).runners[0]
    runnerPids.push(runner.pid)
    const direct = runner.address
    const paths = { direct, local: s.info.api, remote: e.info.api }

    if (want(1)) {
      // 1. added latency, on shared cores and with llama-server on a core of its own (as in 3)
      const addedLatency = async (label, warm) => {
        printLatencies(`\n1. latency of one request (max_tokens 1, sequential, n=${N} per path after ${warm} to warm up, paths in turn), ${label}, ms`,
          await latencies(paths, short, warm),
          { direct: 'llama-server directly', local: 'local agent -> its runner', remote: 'remote agent -> peer -> runner' })
      }
      await addedLatency('shared cores', WARMUP)
      await onOwnCore(runner.pid, [s.pid, e.pid], async (label) => { await addedLatency(label, 500) })
    }

    if (want(2)) {
      // 2. requests/s
      console.log(`\n2. requests/s (max_tokens 1, ${C} concurrent, ${N} requests)`)
      for (const [name, base] of Object.entries(paths)) {
        let next = 0
        const t0 = performance.now()
        await Promise.all(Array.from({ length: C }, async () => { while (next++ < N) await chat(base, short) }))
        console.log(`   ${name.padEnd(8)} ${(N / ((performance.now() - t0) / 1000)).toFixed(0).padStart(6)} req/s`)
      }
    }

    if (want(3)) {
      // 3. tokens/s of one long stream; the paths take turns run by run, so drift hits them alike.
      // Two rates: decode (tokens after the first / time from the first to the last content
      // chunk: the generation speed a client sees, what llama.cpp's predicted_per_second and
      // serving benchmarks call tokens/s) and wall (all tokens / time from the request to the
      // last chunk: time to first token included, which sections 1 and 0 measure on their own).
      // Twice: on shared cores, and with llama-server on a core of its own (the rest on the
      // others). On shared cores the remote path runs four processes on this machine's 2 cores
      // (load generator, entry agent, serving agent, runner) against two for the direct path;
      // on a real mesh the entry agent is on another host, and a GPU host's runner does not
      // compete with its agent for a core. Pinned, the figure says whether the mesh delivers
      // tokens as fast as the runner makes them; shared, what co-location costs.
      const tokenRates = async (label, warm) => {
        console.log(`\n3. tokens/s of one stream (max_tokens 1000, ignore_eos), median of 15 after ${warm} to warm up, paths in turn, ${label}`)
        const rates = Object.fromEntries(Object.keys(paths).map((name) => [name, { decode: [], wall: [], ttft: [] }]))
        const long = (i) => ({ stream: true, max_tokens: 1000, ignore_eos: true, messages: [{ role: 'user', content: `story ${i}` }] })
        for (let i = 0; i < warm; i++) for (const base of Object.values(paths)) await streamTimes(base, long(i))
        for (let i = 0; i < 15; i++) {
          for (const [name, base] of Object.entries(paths)) {
            const r = await streamTimes(base, long(i))
            rates[name].decode.push((r.tokens - 1) / ((r.lastMs - r.firstMs) / 1000))
            rates[name].wall.push(r.tokens / (r.lastMs / 1000))
            rates[name].ttft.push(r.firstMs)
          }
        }
        console.log('   path       decode tokens/s        wall tokens/s          first token')
        for (const [name, x] of Object.entries(rates)) {
          const vs = (k) => name === 'direct' ? '        ' : ` (${(pct(x[k], 0.5) / pct(rates.direct[k], 0.5)).toFixed(2)}x)`
          console.log(`   ${name.padEnd(8)} ${pct(x.decode, 0.5).toFixed(0).padStart(8)}${vs('decode')}   ${pct(x.wall, 0.5).toFixed(0).padStart(8)}${vs('wall')}   ${f(pct(x.ttft, 0.5)).padStart(7)} ms`)
        }
      }
      await tokenRates('shared cores', STREAM_WARMUP)
      await onOwnCore(runner.pid, [s.pid, e.pid], async (label) => { await tokenRates(label, 5) })
    }
    await Promise.all(procs.splice(0).map(async (p) => { await p.stop(5000) }))
  }

  // 4. three entries, three serving hosts with 2 slots each
  if (want(4)) {
    // --hosts sim (default): each serving agent adopts a runner of its own that holds every
    // request --service-ms with 2 slots (fastRunner): three hosts of independent capacity, as
    // three GPU hosts are. --hosts llama: three llama-servers on the tiny model, which here
    // share the machine's 2 cores, so spreading a burst over them adds no capacity (measured:
    // three pools piling onto two of them were faster than any spread) and the section shows
    // only the collisions.
    const sim = values.hosts !== 'llama'
    const SERVICE_MS = Number(values['service-ms'])
    const hostArgs = async (i) => {
      if (!sim) return serveArgs(2)
      const runner = await fastRunner({ serviceMs: SERVICE_MS, slots: 2 })
      closers.push(() => { runner.server.close() })
      const cfg = join(dir, `sim${i}.json`)
      await writeFile(cfg, JSON.stringify({ mlx: { url: runner.url, model: 'tiny', slots: 2 } }))
      return ['--config', cfg]
    }
    const s0 = await start('s0', await hostArgs(0))
    const boot = ['--bootstrap', s0.info.addrs[0]]
    const servers = [s0, ...await Promise.all([1, 2].map(async (i) => await start(`s${i}`, [...boot, ...await hostArgs(i)])))]
    const entries = await Promise.all([0, 1, 2].map(async (i) => await start(`e${i}`, boot)))
    for (const x of entries) await readyRunners(x, 3)
    const hostRunners = []
    for (const sv of servers) {
      const r = (await getJson(`${sv.info.api}/admin/runners`)).runners[0]
      if (r.pid != null) runnerPids.push(r.pid)
      hostRunners.push(r.address)
    }
    // the routers of the seed's first limitation: three applications, each with its own pool of
    // the three runners and nothing shared; each sends a request to the host where IT has
    // the fewest requests in flight, ties to the host the (same, stale) load figures rank first
    // for all of them, and a full runner queues the request. No agent on the path, so
    // this baseline is spared the agents' own cost.
    const pools = entries.map(() => new Map(hostRunners.map((h) => [h, 0])))
    const alone = async (pool, body) => {
      const host = [...pool].reduce((best, x) => x[1] < best[1] ? x : best)[0]
      pool.set(host, pool.get(host) + 1)
      try {
        return await chat(host, body)
      } finally {
        pool.set(host, pool.get(host) - 1)
      }
    }
    const counters = async () => {
      let busy = 0; let queued = 0; let peak = 0
      for (const sv of servers) for (const a of (await getJson(`${sv.info.api}/admin/admission`)).admission) { busy += a.busyAnswers; queued += a.queued; peak = Math.max(peak, a.peakBusy) }
      return { busy, queued, peak }
    }
    console.log(`\n4. 3 entry agents x ${BURST} concurrent requests over 3 hosts x 2 slots (${sim ? `runners holding each request ${SERVICE_MS} ms` : 'llama-server, max_tokens 64, on the shared cores'}), ${ROUNDS} rounds per mode, modes in turn`)
    console.log('   routing                          busy answers  queued  retries/req  p50 ms   p99 ms')
    // warm-up round, then the modes take turns round by round so drift hits them alike
    await Promise.all(entries.map(async (x) => await chat(x.info.api, { max_tokens: 64, messages: [{ role: 'user', content: 'warm' }] })))
    // five modes: every entry routes with claims (least-loaded, and the default performance
    // strategy); every entry picks at random (with llmesh's busy answers and failover); three
    // applications each with its own pool and nothing shared (above); one central scheduler
    // (all requests enter through e0, which sees every in-flight request itself)
    const modes = ['least-loaded', 'performance', 'random', 'alone', 'central']
    const stats = Object.fromEntries(modes.map((m) => [m, { xs: [], tried: 0, busy: 0, queued: 0 }]))
    for (let round = 0; round < ROUNDS * modes.length; round++) {
      const mode = modes[round % modes.length]
      const strategy = mode === 'central' ? 'least-loaded' : mode
      const st = stats[mode]
      const before = await counters()
      {
        const body = (i, j) => ({ max_tokens: 64, ignore_eos: true, messages: [{ role: 'user', content: `burst ${round} ${i} ${j}` }] })
        const all = entries.flatMap((x, i) => Array.from({ length: BURST }, async (_, j) => mode === 'alone'
          ? await alone(pools[i], body(i, j))
          : await chat((mode === 'central' ? entries[0] : x).info.api, body(i, j), { 'x-llmesh-strategy': strategy })))
        for (const r of await Promise.all(all)) {
          st.xs.push(r.ms)
          st.tried += (String(r.headers['x-llmesh-route']).match(/tried /g) ?? []).length
        }
        await new Promise((resolve) => setTimeout(resolve, 700)) // let heartbeats (every 500 ms) settle
      }
      const after = await counters()
      st.busy += after.busy - before.busy
      st.queued += after.queued - before.queued
    }
    for (const [mode, st] of Object.entries(stats)) {
      const label = { 'least-loaded': 'coordinated (least-loaded+claims)', performance: 'coordinated (performance+claims)', random: 'random entry, llmesh failover', alone: 'three pools, nothing shared', central: 'one central scheduler (e0 only)' }[mode]
      const viaAgents = mode !== 'alone' // requests that did not pass an agent have no admission counters
      console.log(`   ${label.padEnd(33)} ${(viaAgents ? String(st.busy) : '-').padStart(12)} ${(viaAgents ? String(st.queued) : '-').padStart(7)} ${(st.tried / st.xs.length).toFixed(2).padStart(12)} ${f(pct(st.xs, 0.5)).padStart(7)} ${f(pct(st.xs, 0.99)).padStart(8)}`)
    }
  }
} finally {
  for (const c of children) c.kill('SIGKILL')
  for (const close of closers) close()
  await Promise.all(procs.map(async (p) => { await p.stop(5000) }))
  for (const pid of runnerPids) { try { process.kill(pid, 'SIGKILL') } catch {} }
  await rm(dir, { recursive: true, force: true })
}
