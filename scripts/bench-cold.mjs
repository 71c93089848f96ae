#!/usr/bin/env node
// Cold start of a model on demand, with real agents on loopback and the real llama-server:
// host A has N copies of the tiny model in its --model-dir (no --model), entry B has none. Each
// round asks B for a model no host runs (streaming, max_tokens 1) and splits the time to its
// first token into:
//   route  B receives the request, ranks, plans the placement (planCold) and forwards it to A,
//          until A's placement asks for the start
//   room   A checks its model memory (and would evict)
//   spawn  the runner is created until llama-server answers HTTP (process start, binds its port)
//   load   llama-server loads the weights until /health is ok
//   first  ready until the client's first chunk (the request's prompt and its first token)
// then asks once more for the same model (warm) for comparison.
// Every agent runs on this machine: one wall clock for every timestamp.
// Usage: npx tsc -b && node scripts/bench-cold.mjs [--rounds 5]
import '../packages/kit/dist/polyfill.js'
import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { request } from 'undici'
import { ensureLlamaCpp, ensureTinyModel, startAgentProcess, waitFor, LOOPBACK_AGENT_ARGS } from '../packages/fixtures/dist/index.js'

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '5' } } })
const ROUNDS = Number(values.rounds)
const progress = (line) => { process.stderr.write(`[fixtures] ${line}\n`) }
const build = await ensureLlamaCpp(progress)
const model = await ensureTinyModel(progress)

const dir = await mkdtemp(join(tmpdir(), 'llmesh-bench-cold-'))
const models = join(dir, 'models')
await mkdir(models)
for (let i = 0; i < ROUNDS; i++) await copyFile(model, join(models, `cold-${i}.gguf`))

const agents = []
try {
  const a = await startAgentProcess({ name: 'host-a', dataDir: join(dir, 'a'), args: [...LOOPBACK_AGENT_ARGS, '--llama-server', build.llamaServer, '--model-dir', models] })
  agents.push(a)
  const b = await startAgentProcess({ name: 'entry-b', dataDir: join(dir, 'b'), args: [...LOOPBACK_AGENT_ARGS, '--bootstrap', a.info.addrs[0]] })
  agents.push(b)
  await waitFor('B to see A and its catalog', async () => {
    const v = await (await request(`${b.info.api}/mesh/view`)).body.json()
    return v.nodes.some((n) => n.peerId === a.info.peerId && n.connected && n.models.length === ROUNDS)
  }, 30_000)

  const firstChunk = async (name) => {
    const t0 = Date.now()
    const res = await request(`${b.info.api}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: name, stream: true, max_tokens: 1, messages: [{ role: 'user', content: 'hi' }] })
    })
    if (res.statusCode !== 200) throw new Error(`${name}: ${res.statusCode} ${await res.body.text()}`)
    const it = res.body[Symbol.asyncIterator]()
    await it.next()
    const t1 = Date.now()
    for (;;) if ((await it.next()).done) break
    return { t0, t1 }
  }

  const rows = []
  for (let i = 0; i < ROUNDS; i++) {
    const name = `cold-${i}`
    const { t0, t1 } = await firstChunk(name)
    const { placements } = await (await request(`${a.info.api}/admin/placements`)).body.json()
    const t = placements.find((p) => p.model === name)?.timings
    if (t == null || t.readyAt == null) throw new Error(`no start timings for ${name} on A`)
    const warm = await firstChunk(name)
    rows.push({
      total: t1 - t0,
      route: t.askedAt - t0,
      room: (t.plannedAt ?? t.askedAt) - t.askedAt,
      spawn: (t.loadingAt ?? t.readyAt) - (t.plannedAt ?? t.askedAt),
      load: t.readyAt - (t.loadingAt ?? t.readyAt),
      first: t1 - t.readyAt,
      warm: warm.t1 - warm.t0
    })
  }
  const keys = ['total', 'route', 'room', 'spawn', 'load', 'first', 'warm']
  const median = (xs) => { const s = [...xs].sort((x, y) => x - y); return s[Math.floor((s.length - 1) / 2)] }
  console.log(`cold start of a tiny model on demand, ${ROUNDS} rounds, ms (request at entry B, model on A's disk only)`)
  console.log(['round', ...keys].map((k) => k.padStart(7)).join(''))
  rows.forEach((r, i) => { console.log([String(i), ...keys.map((k) => String(r[k]))].map((c) => c.padStart(7)).join('')) })
  console.log(['median', ...keys.map((k) => String(median(rows.map((r) => r[k]))))].map((c) => c.padStart(7)).join(''))
} finally {
  await Promise.all(agents.map(async (x) => { await x.stop(5000) }))
  await rm(dir, { recursive: true, force: true })
}
