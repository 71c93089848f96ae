/**
 * Models on demand, with real agents and real llama-servers on loopback. Three hosts with
 * overlapping model dirs (no `--model`): a model on one host's disk requested at another starts
 * there; requests for one cold model from three entries at once start one runner; a burst on a
 * model starts a replica on a second host, stopped once idle; the host holding a placement killed
 * -9 gets its model placed elsewhere by the next request. One host with a model memory limit:
 * loading a model evicts the least recently used, after its streams end, never a pinned one; a
 * model that fits nowhere is answered 507 with the numbers, and loads with the override.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request } from 'undici'
import { startAgentProcess, waitFor, type AgentProcess, LOOPBACK_AGENT_ARGS } from '@llmesh/fixtures'
import { DEFAULT_CTX_SIZE, describeModel } from '@llmesh/runners'
import { footprintBytes } from '@llmesh/scheduler'

const llamaServer = process.env['LLMESH_TEST_LLAMA_SERVER']!
const model = process.env['LLMESH_TEST_MODEL']!
const SLOTS = 2

interface ViewPlacement { peerId: string, model: string, state: string, reason: string, progress?: number, footprintBytes?: number, error?: string }
interface View {
  nodes: Array<{ peerId: string, name: string, connected: boolean, state: string, runners: Array<{ id: string, model: string, state: string }> }>
  placements: ViewPlacement[]
  pins: Array<{ model: string, host?: string }>
}
interface Reply { status: number, headers: Record<string, string | string[] | undefined>, text: string }

async function view (a: AgentProcess): Promise<View> {
  const res = await request(`${a.info.api}/mesh/view`)
  return await res.body.json() as View
}

async function chat (entry: AgentProcess, name: string, body: object = {}, headers: Record<string, string> = {}): Promise<Reply> {
  const res = await request(`${entry.info.api}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ model: name, max_tokens: 4, messages: [{ role: 'user', content: `hello ${name}` }], ...body })
  })
  return { status: res.statusCode, headers: res.headers, text: await res.body.text() }
}

/** Runners of `name` in the mesh, as `a` sees it, that are not stopped or failed. */
function live (v: View, name: string): Array<{ peerId: string, id: string, state: string }> {
  return v.nodes.flatMap((n) => n.runners.filter((r) => r.model === name && r.state !== 'stopped' && r.state !== 'failed').map((r) => ({ peerId: n.peerId, id: r.id, state: r.state })))
}

async function localRunnerPids (a: AgentProcess): Promise<number[]> {
  const res = await request(`${a.info.api}/admin/runners`)
  const { runners } = await res.body.json() as { runners: Array<{ pid?: number }> }
  return runners.flatMap((r) => r.pid != null ? [r.pid] : [])
}

function killQuietly (pid: number): void {
  try { process.kill(pid, 'SIGKILL') } catch { /* gone already */ }
}

let dir: string
const leftovers: number[] = []

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'llmesh-on-demand-'))
})

afterAll(async () => {
  for (const pid of leftovers) killQuietly(pid)
  await rm(dir, { recursive: true, force: true })
})

/** A model dir holding copies of the tiny model under the given names. */
async function modelDir (name: string, models: string[]): Promise<string> {
  const d = join(dir, `models-${name}`)
  await mkdir(d, { recursive: true })
  for (const m of models) await copyFile(model, join(d, `${m}.gguf`))
  return d
}

async function configFile (name: string, config: object): Promise<string> {
  const file = join(dir, `${name}.json`)
  await writeFile(file, JSON.stringify(config))
  return file
}

describe('models on demand across three hosts', () => {
  const hosts: AgentProcess[] = []
  let a: AgentProcess, b: AgentProcess, c: AgentProcess

  beforeAll(async () => {
    const config = await configFile('three', { placement: { scaleUpAfterMs: 500, scaleDownAfterMs: 3000 } })
    const common = [...LOOPBACK_AGENT_ARGS, '--config', config, '--llama-server', llamaServer, '--slots', String(SLOTS)]
    a = await startAgentProcess({ name: 'host-a', dataDir: join(dir, 'a'), args: [...common, '--model-dir', await modelDir('a', ['solo', 'shared', 'movable'])] })
    const boot = ['--bootstrap', a.info.addrs[0]!]
    b = await startAgentProcess({ name: 'host-b', dataDir: join(dir, 'b'), args: [...common, ...boot, '--model-dir', await modelDir('b', ['shared'])] })
    c = await startAgentProcess({ name: 'host-c', dataDir: join(dir, 'c'), args: [...common, ...boot, '--model-dir', await modelDir('c', ['shared', 'movable'])] })
    hosts.push(a, b, c)
    for (const h of hosts) {
      await waitFor(`${h.name} to see three connected hosts and their catalogs`, async () => {
        const v = await view(h)
        return v.nodes.length === 3 && v.nodes.every((n) => n.connected && n.state === 'alive')
      }, 30_000)
    }
  }, 90_000)

  afterAll(async () => {
    for (const h of hosts) leftovers.push(...await localRunnerPids(h).catch(() => []))
    await Promise.all(hosts.map(async (h) => { await h.stop(5000) }))
  })

  it('starts a model found only in one host\'s model dir when another host is asked for it', async () => {
    expect(live(await view(b), 'solo')).toEqual([])
    const r = await chat(b, 'solo')
    expect(r.status, r.text).toBe(200)
    expect(r.headers['x-llmesh-node']).toBe(a.info.peerId)
    expect(String(r.headers['x-llmesh-route'])).toContain('cold-start')
    const v = await waitFor('B to see the placement of solo on A ready', async () => {
      const v = await view(b)
      return v.placements.some((p) => p.model === 'solo' && p.peerId === a.info.peerId && p.state === 'ready') ? v : undefined
    })
    expect(v.placements.find((p) => p.model === 'solo')).toMatchObject({ reason: 'request', peerId: a.info.peerId })
    // warm from here on: the next request goes to the running runner, without a cold start
    const again = await chat(c, 'solo')
    expect(again.status).toBe(200)
    expect(String(again.headers['x-llmesh-route'])).not.toContain('cold-start')
  }, 60_000)

  it('starts one runner when three entries ask for the same cold model at once', async () => {
    const replies = await Promise.all(hosts.map(async (h) => await chat(h, 'shared')))
    expect(replies.map((r) => r.status)).toEqual([200, 200, 200])
    expect(new Set(replies.map((r) => r.headers['x-llmesh-node'])).size).toBe(1)
    // every host's own runners, not the gossiped view: a second start would show here first
    let runners = 0
    for (const h of hosts) {
      const res = await request(`${h.info.api}/admin/runners`)
      const { runners: local } = await res.body.json() as { runners: Array<{ model: string }> }
      runners += local.filter((r) => r.model === 'shared').length
    }
    expect(runners).toBe(1)
  }, 60_000)

  it('starts a replica on a second host under a sustained queue, and stops it once idle', async () => {
    const first = live(await view(a), 'shared')
    expect(first).toHaveLength(1)
    let sawReplica = false
    const watch = waitFor('a replica of shared on a second host', async () => {
      const v = await view(a)
      return live(v, 'shared').some((r) => r.peerId !== first[0]!.peerId) && v.placements.some((p) => p.model === 'shared' && p.reason === 'replica')
    }, 40_000, 100).then(() => { sawReplica = true })
    // waves of requests, many more than the slots, until the replica shows (bounded)
    for (let wave = 0; wave < 12 && !sawReplica; wave++) {
      const burst = await Promise.all(Array.from({ length: 24 }, async (_, i) => await chat(hosts[i % 3]!, 'shared', { max_tokens: 96, ignore_eos: true, messages: [{ role: 'user', content: `wave ${wave} ${i}` }] })))
      expect(burst.every((r) => r.status === 200), burst.find((r) => r.status !== 200)?.text).toBe(true)
    }
    await watch
    expect(sawReplica).toBe(true)
    await waitFor('the idle replica to stop', async () => live(await view(a), 'shared').length === 1, 30_000, 200)
  }, 120_000)

  it('places the model again elsewhere when the host holding it is killed -9', async () => {
    const r1 = await chat(b, 'movable')
    expect(r1.status, r1.text).toBe(200)
    const holder = hosts.find((h) => h.info.peerId === r1.headers['x-llmesh-node'])!
    expect([a, c]).toContain(holder)
    const other = holder === a ? c : a
    const pids = await localRunnerPids(holder)
    await holder.kill()
    for (const pid of pids) killQuietly(pid)
    await waitFor('B to stop counting on the killed host', async () => {
      const n = (await view(b)).nodes.find((x) => x.peerId === holder.info.peerId)
      return n == null || !n.connected || n.state === 'dead'
    }, 30_000, 100)
    const r2 = await chat(b, 'movable')
    expect(r2.status, r2.text).toBe(200)
    expect(r2.headers['x-llmesh-node']).toBe(other.info.peerId)
  }, 90_000)
})

describe('a host with a model memory limit', () => {
  let d: AgentProcess

  beforeAll(async () => {
    const info = (await describeModel(model)).info
    const one = footprintBytes(info, DEFAULT_CTX_SIZE)
    // room for one model and a half: loading a second one has to evict the first
    const config = await configFile('small', { placement: { memoryBytes: Math.floor(one * 1.5), evictDrainMs: 30_000 } })
    d = await startAgentProcess({ name: 'host-d', dataDir: join(dir, 'd'), args: [...LOOPBACK_AGENT_ARGS, '--config', config, '--llama-server', llamaServer, '--slots', String(SLOTS), '--model-dir', await modelDir('d', ['m1', 'm2'])] })
  }, 60_000)

  afterAll(async () => {
    leftovers.push(...await localRunnerPids(d).catch(() => []))
    await d.stop(5000)
  })

  it('evicts the least recently used model to load the requested one', async () => {
    expect((await chat(d, 'm1')).status).toBe(200)
    const r = await chat(d, 'm2')
    expect(r.status, r.text).toBe(200)
    const v = await view(d)
    expect(live(v, 'm1')).toEqual([])
    expect(live(v, 'm2')).toHaveLength(1)
  }, 60_000)

  it('lets the streams of the model it evicts finish first', async () => {
    // a long stream on m2, then a request for m1: m2 is evicted only once the stream has ended
    const res = await request(`${d.info.api}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'm2', stream: true, max_tokens: 1500, ignore_eos: true, messages: [{ role: 'user', content: 'a long one' }] })
    })
    expect(res.statusCode).toBe(200)
    const it = res.body[Symbol.asyncIterator]()
    const firstChunk = await it.next()
    expect(firstChunk.done).toBe(false)
    const m1 = chat(d, 'm1')
    let text = Buffer.from(firstChunk.value as Uint8Array).toString()
    for (;;) {
      const n = await it.next()
      if (n.done === true) break
      text += Buffer.from(n.value as Uint8Array).toString()
    }
    expect(text).toContain('data: [DONE]')
    expect(text).not.toContain('"error"')
    const r = await m1
    expect(r.status, r.text).toBe(200)
    expect(live(await view(d), 'm2')).toEqual([])
  }, 60_000)

  it('never evicts a pinned model: the request is answered 507 with the numbers, and the override loads it', async () => {
    const pin = await request(`${d.info.api}/admin/pins`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'm1' }) })
    expect(pin.statusCode, await pin.body.text()).toBe(200)
    await waitFor('the pin to be in the view', async () => (await view(d)).pins.some((p) => p.model === 'm1'))
    const refused = await chat(d, 'm2')
    expect(refused.status).toBe(507)
    const body = JSON.parse(refused.text) as { error: { code: string, message: string } }
    expect(body.error.code).toBe('insufficient_memory')
    expect(body.error.message).toMatch(/needs \d+\.\d\d GiB.*has \d+\.\d\d GiB/)
    expect(live(await view(d), 'm1')).toHaveLength(1)

    const forced = await chat(d, 'm2', {}, { 'x-llmesh-load-anyway': '1' })
    expect(forced.status, forced.text).toBe(200)
    const v = await view(d)
    expect(live(v, 'm1')).toHaveLength(1)
    expect(live(v, 'm2')).toHaveLength(1)

    const unpin = await request(`${d.info.api}/admin/pins`, { method: 'DELETE', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'm1' }) })
    expect(unpin.statusCode).toBe(200)
    await waitFor('the pin to be gone', async () => !(await view(d)).pins.some((p) => p.model === 'm1'))
  }, 60_000)
})
