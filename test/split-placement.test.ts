/**
 * Split placement across hosts in network namespaces joined by a bridge, with real agents,
 * llama-server and rpc-server. Each host's model memory is set in its config so that the model
 * fits no one host: it is planned across two, its coordinator (the host with the file) reaches
 * the member's rpc-server, which listens on the member's loopback only, through the mesh; a
 * third host with no room and no file is the entry. Many requests at once use one coordinator;
 * the coordinator's llama-server killed is restarted over the same split;
 * kill -9 of the member's rpc-server, then of a member's agent: the request in flight ends with
 * an error (no hang), the split is planned again and answers; the last member cut off the
 * network (silent, not closed): the request in flight ends, the model has no room without it
 * (507), and answers again once it is back. A model the hosts together cannot
 * hold is answered 507 with the blocks each could take. The network and every process are
 * removed by id, even on failure.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  TINY_MOE_MODEL, TestNetwork, cleanupStaleTestNetworks, ensureTinyModel, netnsAvailable, netnsUnavailableReason, runLlmesh, startAgentProcess, waitFor,
  type AgentProcess
} from '@llmesh/fixtures'
import { describeModel } from '@llmesh/runners'
import { RUNNER_OVERHEAD_BYTES, footprint } from '@llmesh/scheduler'
import type { ModelInfo } from '@llmesh/protocol'

const llamaServer = process.env['LLMESH_TEST_LLAMA_SERVER']!
const CTX = 2048

interface Split { coordinator: string, hosts: Array<{ peerId: string, layers: number, endpoint?: string }> }
interface ViewPlacement { peerId: string, model: string, state: string, reason: string, error?: string, split?: Split }
interface View { nodes: Array<{ peerId: string, name: string, state: string, connected: boolean }>, placements: ViewPlacement[] }
interface Reply { status: number, route: string, text: string }
interface RunnerRow { id: string, kind: string, model: string, state: string, pid?: number, address?: string, port?: number }

let net: TestNetwork
let dir: string
const agents: Array<AgentProcess | undefined> = []

/** Runs a small ESM script with node inside host i's namespace; returns its stdout. */
async function runIn (i: number, script: string, timeoutMs = 30_000): Promise<string> {
  const res = await net.run(i, process.execPath, ['--input-type=module', '-e', script], timeoutMs)
  if (res.code !== 0) throw new Error(`script in host ${i} failed (${res.code}): ${res.stderr}`)
  return res.stdout
}

async function getJson<T> (i: number, path: string): Promise<T> {
  const url = `${agents[i]!.info.api}${path}`
  return JSON.parse(await runIn(i, `process.stdout.write(await (await fetch(${JSON.stringify(url)})).text())`, 10_000)) as T
}

const viewOf = async (i: number): Promise<View> => await getJson<View>(i, '/mesh/view')
const runnersOf = async (i: number): Promise<RunnerRow[]> => (await getJson<{ runners: RunnerRow[] }>(i, '/admin/runners')).runners

/** A chat completion sent to host i's agent from inside host i. */
async function chat (i: number, model: string, body: object = {}, timeoutMs = 120_000): Promise<Reply> {
  const url = `${agents[i]!.info.api}/v1/chat/completions`
  const req = { model, max_tokens: 8, messages: [{ role: 'user', content: 'hello' }], ...body }
  const script = `const r = await fetch(${JSON.stringify(url)}, { method: 'POST', headers: { 'content-type': 'application/json' }, body: ${JSON.stringify(JSON.stringify(req))} })
process.stdout.write(JSON.stringify({ status: r.status, route: r.headers.get('x-llmesh-route') ?? '', text: await r.text() }))`
  return JSON.parse(await runIn(i, script, timeoutMs)) as Reply
}

/**
 * A long streamed completion from inside host i, started in the background: `started` resolves
 * once tokens flow, `ended` with how the stream ended (the last event's text, `[DONE]` or an error).
 */
function streamLong (i: number, model: string): { started: Promise<void>, ended: Promise<{ done: boolean, tail: string }> } {
  const url = `${agents[i]!.info.api}/v1/chat/completions`
  const req = { model, stream: true, max_tokens: CTX - 64, ignore_eos: true, messages: [{ role: 'user', content: 'count' }] }
  const script = `const r = await fetch(${JSON.stringify(url)}, { method: 'POST', headers: { 'content-type': 'application/json' }, body: ${JSON.stringify(JSON.stringify(req))} })
let text = ''; let told = false
const dec = new TextDecoder()
try { for await (const chunk of r.body) { text += dec.decode(chunk, { stream: true }); if (!told && text.split('data: ').length > 4) { told = true; console.log('STARTED') } } } catch (e) { text += '\\nREAD ERROR ' + e.message }
console.log('END ' + JSON.stringify({ done: text.includes('[DONE]'), tail: text.slice(-600) }))`
  const child = net.exec(i, process.execPath, ['--input-type=module', '-e', script])
  let out = ''
  let onStart: () => void = () => {}
  const started = new Promise<void>((resolve) => { onStart = resolve })
  child.stdout!.on('data', (d: Buffer) => { out += d.toString(); if (out.includes('STARTED')) onStart() })
  const ended = new Promise<{ done: boolean, tail: string }>((resolve, reject) => {
    child.on('close', () => {
      const line = out.split('\n').find((l) => l.startsWith('END '))
      if (line == null) reject(new Error(`stream script ended without a result: ${out.slice(-400)}`))
      else resolve(JSON.parse(line.slice(4)) as { done: boolean, tail: string })
    })
  })
  return { started, ended }
}

/** Whether a TCP connection from host `from` to `host:port` succeeds. */
async function canConnect (from: number, host: string, port: number): Promise<boolean> {
  const script = `import { connect } from 'node:net'
const s = connect({ host: ${JSON.stringify(host)}, port: ${port} })
s.setTimeout(3000)
s.on('connect', () => { process.stdout.write('yes'); s.destroy() })
s.on('error', () => { process.stdout.write('no') })
s.on('timeout', () => { process.stdout.write('no'); s.destroy() })`
  return (await runIn(from, script, 10_000)) === 'yes'
}

/** The memory planSplit counts for a block of `m` and for what its coordinator holds besides blocks. */
function sizes (m: ModelInfo): { block: number, rest: number, layers: number } {
  const f = footprint(m, CTX)
  const layers = m.layers!
  return { block: m.bytesPerLayer! + f.kvBytes / layers, rest: (m.otherBytes ?? 0) + RUNNER_OVERHEAD_BYTES, layers }
}

async function startHost (i: number, name: string, config: object, models: string[]): Promise<AgentProcess> {
  const host = net.hosts[i]!
  const modelDir = join(dir, `models-${name}`)
  await mkdir(modelDir, { recursive: true })
  for (const m of models) await copyFile(join(dir, `${m}.gguf`), join(modelDir, `${m}.gguf`))
  const configFile = join(dir, `${name}.json`)
  await writeFile(configFile, JSON.stringify({ llamaServer: { ctxSize: CTX, slots: 2, threads: 1 }, rpcServer: { threads: 1 }, ...config }))
  const boot = i === 0 ? [] : ['--bootstrap', `/ip4/${net.hosts[0]!.ip}/tcp/4778/p2p/${agents[0]!.info.peerId}`]
  const agent = await startAgentProcess({
    name,
    dataDir: join(dir, name),
    netns: host.name,
    args: [
      '--listen', `/ip4/${host.ip}/tcp/4778`, '--api-port', '0', '--log-level', 'warn', '--cluster', 'split-test',
      '--cluster-key', join(dir, 'cluster.key'), '--config', configFile, '--llama-server', llamaServer, '--model-dir', modelDir, ...boot
    ]
  })
  agents[i] = agent
  return agent
}

/** a test's bound: loads, kills and re-plans on two shared cores */
const TEST_MS = 180_000

const HOSTS = 4
const A = 0 // the file, room for half the blocks and the rest: the coordinator
const B = 1 // room for half the blocks: a member
const D = 2 // the same: the member left when B goes
const C = 3 // no room, no file: the entry

const skipped = netnsAvailable() ? '' : ` (skipped: ${netnsUnavailableReason()})`

/** A network of `hosts` namespaces, a cluster key and the models' files in a fresh dir; removed by the returned function. */
async function setUp (hosts: number, models: Record<string, Parameters<typeof ensureTinyModel>[1]>): Promise<() => Promise<void>> {
  await cleanupStaleTestNetworks()
  agents.length = 0
  net = await TestNetwork.create({ hosts })
  dir = await mkdtemp(join(tmpdir(), 'llmesh-split-'))
  await runLlmesh(['keygen', '--out', join(dir, 'cluster.key')])
  for (const [name, opts] of Object.entries(models)) await copyFile(await ensureTinyModel(undefined, opts), join(dir, `${name}.gguf`))
  return async () => {
    await Promise.all(agents.map(async (a) => { await a?.kill() }))
    await net?.destroy()
    if (dir != null) await rm(dir, { recursive: true, force: true })
  }
}

async function allConnected (hosts: number[]): Promise<void> {
  for (const i of hosts) {
    await waitFor(`host ${i} to see ${hosts.length} connected hosts`, async () => {
      const v = await viewOf(i)
      return v.nodes.length === hosts.length && v.nodes.every((n) => n.state === 'alive' && n.connected)
    }, 30_000, 200)
  }
}

describe.skipIf(!netnsAvailable())(`split placement of a dense model across hosts in network namespaces${skipped}`, () => {
  let dense: ModelInfo
  let tearDown: (() => Promise<void>) | undefined
  const peerIds: string[] = []
  const peer = (i: number): string => peerIds[i]!

  beforeAll(async () => {
    tearDown = await setUp(HOSTS, { dense: { name: 'tiny-4-blocks', nLayer: 4 }, huge: { name: 'tiny-16-blocks', nLayer: 16 } })
    dense = (await describeModel(join(dir, 'dense.gguf'), 'dense')).info
    const s = sizes(dense)
    // two blocks each and half a block to spare: the model (four blocks) fits no one host
    const half = Math.floor(s.block / 2)
    await startHost(A, 'host-a', { placement: { memoryBytes: Math.floor(s.rest + 2 * s.block + half) } }, ['dense', 'huge'])
    await Promise.all([
      startHost(B, 'host-b', { placement: { memoryBytes: Math.floor(RUNNER_OVERHEAD_BYTES + 2 * s.block + half) } }, []),
      startHost(D, 'host-d', { placement: { memoryBytes: Math.floor(RUNNER_OVERHEAD_BYTES + 2 * s.block + half) } }, []),
      startHost(C, 'host-c', { placement: { memoryBytes: 1 } }, [])
    ])
    peerIds.push(...agents.map((a) => a!.info.peerId))
    await allConnected([A, B, D, C])
  }, 180_000)

  afterAll(async () => { await tearDown?.() }, 60_000)

  /** The dense model's split as host i sees it: the coordinator's placement and its member's. */
  async function splitSeenBy (i: number): Promise<{ coordinator: ViewPlacement, member: ViewPlacement } | undefined> {
    const v = await viewOf(i)
    const coordinator = v.placements.find((p) => p.model === 'dense' && p.split != null && p.reason !== 'split' && p.state === 'ready')
    if (coordinator?.split == null) return undefined
    const memberId = coordinator.split.hosts.find((h) => h.peerId !== coordinator.peerId)?.peerId
    const member = v.placements.find((p) => p.model === 'dense' && p.reason === 'split' && p.peerId === memberId && p.state === 'ready')
    return member != null ? { coordinator, member } : undefined
  }

  let memberIndex = -1

  it('plans a model that fits no host across two and answers through a third; the rpc traffic goes through the mesh', async () => {
    const r = await chat(C, 'dense')
    expect(r.status, r.text).toBe(200)
    expect(JSON.parse(r.text)).toMatchObject({ object: 'chat.completion', model: 'dense' })
    expect(r.route).toContain('split')

    const seen = await waitFor('the split in the entry\'s view', async () => await splitSeenBy(C), 30_000, 200)
    expect(seen.coordinator.peerId).toBe(peer(A))
    const hosts = seen.coordinator.split!.hosts
    expect(hosts.map((h) => h.layers)).toEqual([2, 2])
    memberIndex = [B, D].find((i) => peer(i) === hosts[1]!.peerId)!
    expect(memberIndex).toBeDefined()
    expect(seen.member.peerId).toBe(peer(memberIndex))
    // the coordinator reaches the member through a tunnel on its own loopback
    expect(hosts[1]!.endpoint).toMatch(/^127\.0\.0\.1:\d+$/)

    // the member's rpc-server listens on its loopback only: the coordinator's host cannot reach it directly
    const rpc = (await runnersOf(memberIndex)).find((x) => x.kind === 'rpc-server' && x.model === 'dense')!
    expect(rpc).toMatchObject({ state: 'ready' })
    expect(rpc.address).toMatch(/^127\.0\.0\.1:\d+$/)
    expect(await canConnect(memberIndex, '127.0.0.1', rpc.port!)).toBe(true)
    expect(await canConnect(A, net.hosts[memberIndex]!.ip, rpc.port!)).toBe(false)

    // and the weights crossed the tunnel
    const placements = await getJson<{ placements: Array<{ model: string, tunnels?: Array<{ peerId: string, bytesSent: number }> }> }>(A, '/admin/placements')
    const sent = placements.placements.find((p) => p.model === 'dense')?.tunnels?.find((t) => t.peerId === peer(memberIndex))?.bytesSent ?? 0
    expect(sent).toBeGreaterThan(2 * dense.bytesPerLayer!)
  }, TEST_MS)

  it('serves many requests at once with one coordinator', async () => {
    const coordinators = async (): Promise<RunnerRow[]> => (await runnersOf(A)).filter((x) => x.kind === 'llama-server' && x.model === 'dense')
    const before = await coordinators()
    expect(before).toHaveLength(1)
    const replies = await Promise.all([C, C, C, B, D, A, C, B].map(async (i) => await chat(i, 'dense')))
    for (const r of replies) expect(r.status, r.text).toBe(200)
    const after = await coordinators()
    expect(after.map((x) => [x.id, x.pid])).toEqual(before.map((x) => [x.id, x.pid]))
  }, TEST_MS)

  it('kill -9 of the coordinator\'s llama-server: it is restarted over the same split, the member keeps its part', async () => {
    const rpcBefore = (await runnersOf(memberIndex)).find((x) => x.kind === 'rpc-server' && x.model === 'dense')!
    const coordinator = (await runnersOf(A)).find((x) => x.kind === 'llama-server' && x.model === 'dense')!
    process.kill(coordinator.pid!, 'SIGKILL')
    const r = await waitFor('an answer after the coordinator died', async () => {
      const x = await chat(C, 'dense')
      return x.status === 200 ? x : undefined
    }, 60_000, 500)
    expect(JSON.parse(r.text)).toMatchObject({ object: 'chat.completion' })
    const after = (await runnersOf(A)).find((x) => x.kind === 'llama-server' && x.model === 'dense')!
    expect(after.id).toBe(coordinator.id)
    expect(after.pid).not.toBe(coordinator.pid)
    const rpcAfter = (await runnersOf(memberIndex)).find((x) => x.kind === 'rpc-server' && x.model === 'dense')!
    expect([rpcAfter.id, rpcAfter.pid]).toEqual([rpcBefore.id, rpcBefore.pid])
  }, TEST_MS)

  it('kill -9 of the member\'s rpc-server: the request in flight ends with an error, then the model answers again', async () => {
    const s = streamLong(C, 'dense')
    await s.started
    const rpc = (await runnersOf(memberIndex)).find((x) => x.kind === 'rpc-server' && x.model === 'dense')!
    process.kill(rpc.pid!, 'SIGKILL')
    const end = await s.ended
    expect(end.done, end.tail).toBe(false)
    // an error event in the API's own shape ends the stream
    expect(end.tail).toMatch(/data: \{"error":\{"message":"[^"]+","type":"server_error","code":"[a-z_]+"/)
    const r = await waitFor('an answer after the rpc-server died', async () => {
      const x = await chat(C, 'dense')
      return x.status === 200 ? x : undefined
    }, 60_000, 500)
    expect(JSON.parse(r.text)).toMatchObject({ object: 'chat.completion' })
  }, TEST_MS)

  it('kill -9 of the member\'s agent: the request in flight ends with an error, the split is planned again over the hosts left', async () => {
    const seen = await waitFor('a ready split', async () => await splitSeenBy(C), 60_000, 200)
    const member = [B, D].find((i) => peer(i) === seen.member.peerId)!
    const other = member === B ? D : B
    const s = streamLong(C, 'dense')
    await s.started
    await agents[member]!.kill()
    agents[member] = undefined
    const end = await s.ended
    expect(end.done, end.tail).toBe(false)
    const r = await waitFor('an answer after the member died', async () => {
      const x = await chat(C, 'dense')
      return x.status === 200 ? x : undefined
    }, 60_000, 500)
    expect(JSON.parse(r.text)).toMatchObject({ object: 'chat.completion' })
    const again = await waitFor('the new split in the entry\'s view', async () => await splitSeenBy(C), 30_000, 200)
    expect(again.coordinator.split!.hosts.map((h) => h.peerId)).toEqual([peer(A), peer(other)])
  }, TEST_MS)

  it('a member cut off the network: the request in flight ends (no hang), the model has no room without it, and answers once it is back', async () => {
    const seen = await waitFor('a ready split', async () => await splitSeenBy(C), 60_000, 200)
    const member = [B, D].find((i) => peer(i) === seen.member.peerId)!
    const s = streamLong(C, 'dense')
    await s.started
    await net.cut(member)
    try {
      // its link is silent, not closed: the mesh finds the member dead and cuts its tunnels
      const end = await s.ended
      expect(end.done, end.tail).toBe(false)
      // once the split ended, the coordinator's own blocks are free again: it alone holds 2 of 4
      const r = await waitFor('507 with the room of the hosts left', async () => {
        const x = await chat(C, 'dense')
        return x.status === 507 && /hold 2 of 4 blocks/.test(x.text) ? x : undefined
      }, 30_000, 500)
      expect(JSON.parse(r.text)).toMatchObject({ error: { code: 'insufficient_memory' } })
    } finally {
      await net.heal(member)
    }
    const r = await waitFor('an answer once the member is back', async () => {
      const x = await chat(C, 'dense')
      return x.status === 200 ? x : undefined
    }, 60_000, 500)
    expect(JSON.parse(r.text)).toMatchObject({ object: 'chat.completion' })
  }, TEST_MS)

  it('answers a model the hosts together cannot hold with 507 and the blocks each host could take', async () => {
    const r = await chat(C, 'huge')
    expect(r.status, r.text).toBe(507)
    const body = JSON.parse(r.text) as { error: { code: string, message: string } }
    expect(body.error.code).toBe('insufficient_memory')
    expect(body.error.message).toMatch(/hold \d+ of 16 blocks: 'host-a' [\d.]+ GiB free, \d+ blocks/)
  }, TEST_MS)
})

describe.skipIf(!netnsAvailable())(`split placement of a mixture-of-experts model${skipped}`, () => {
  let tearDown: (() => Promise<void>) | undefined

  beforeAll(async () => {
    tearDown = await setUp(3, { moe: TINY_MOE_MODEL })
    const moe = (await describeModel(join(dir, 'moe.gguf'), 'moe')).info
    expect(moe.experts).toBe(TINY_MOE_MODEL.nExpert)
    const s = sizes(moe)
    const half = Math.floor(s.block / 2)
    await startHost(0, 'moe-a', { placement: { memoryBytes: Math.floor(s.rest + 2 * s.block + half) } }, ['moe'])
    await Promise.all([
      startHost(1, 'moe-b', { placement: { memoryBytes: Math.floor(RUNNER_OVERHEAD_BYTES + 2 * s.block + half) } }, []),
      startHost(2, 'moe-c', { placement: { memoryBytes: 1 } }, [])
    ])
    await allConnected([0, 1, 2])
  }, 180_000)

  afterAll(async () => { await tearDown?.() }, 60_000)

  it('plans it across two hosts, every expert of a block on one host, and answers through a third', async () => {
    const r = await chat(2, 'moe')
    expect(r.status, r.text).toBe(200)
    expect(JSON.parse(r.text)).toMatchObject({ object: 'chat.completion', model: 'moe' })
    expect(r.route).toContain('split')
    const v = await viewOf(2)
    const coordinator = v.placements.find((p) => p.model === 'moe' && p.reason !== 'split')
    expect(coordinator).toMatchObject({ peerId: agents[0]!.info.peerId, state: 'ready' })
    // blocks are the unit: a block's experts are never shared between hosts
    expect(coordinator!.split!.hosts.map((h) => [h.peerId, h.layers])).toEqual([[agents[0]!.info.peerId, 2], [agents[1]!.info.peerId, 2]])
    const member = await waitFor('the member\'s placement', async () => (await viewOf(2)).placements.find((p) => p.model === 'moe' && p.reason === 'split' && p.state === 'ready'))
    expect(member.peerId).toBe(agents[1]!.info.peerId)
  }, TEST_MS)
})
