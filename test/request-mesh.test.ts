/**
 * Requests through a mesh of real agents on loopback: 3 serving hosts (tiny model on a real
 * llama-server, 2 slots each) and 3 entry agents without models. A burst from all three entries
 * completes without any host running more than its slots; round-robin per request visits every
 * host; a serving host killed before the first token is failed over; one killed mid-stream
 * ends the client's stream with an error event.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request } from 'undici'
import { startAgentProcess, waitFor, type AgentProcess, LOOPBACK_AGENT_ARGS } from '@llmesh/fixtures'

const llamaServer = process.env['LLMESH_TEST_LLAMA_SERVER']!
const model = process.env['LLMESH_TEST_MODEL']!
const loopback = LOOPBACK_AGENT_ARGS
const SLOTS = 2

let dir: string
const servers: AgentProcess[] = []
const entries: AgentProcess[] = []
/** llama-server pid per serving agent's peer id: a SIGKILLed agent leaves its runner behind */
const runnerPids = new Map<string, number>()

interface View { nodes: Array<{ peerId: string, connected: boolean, runners: Array<{ model: string, state: string }>, self: boolean, metrics: { claims: Record<string, number>, slotsBusy: number } | null }> }
interface Admission { admission: Array<{ slots: number, peakBusy: number, peakQueue: number, granted: number }> }

async function getJson<T> (url: string): Promise<T> {
  const res = await request(url)
  return await res.body.json() as T
}

async function chat (entry: AgentProcess, body: object, headers: Record<string, string> = {}): Promise<{ status: number, headers: Record<string, string | string[] | undefined>, text: string }> {
  const res = await request(`${entry.info.api}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ model: 'tiny', ...body })
  })
  return { status: res.statusCode, headers: res.headers, text: await res.body.text() }
}

function killQuietly (pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid == null) return
  try { process.kill(pid, signal) } catch { /* gone already */ }
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'llmesh-request-mesh-'))
  const serve = ['--model', `tiny=${model}`, '--llama-server', llamaServer, '--slots', String(SLOTS)]
  const first = await startAgentProcess({ name: 'serve-0', dataDir: join(dir, 'serve-0'), args: [...loopback, ...serve] })
  servers.push(first)
  const boot = ['--bootstrap', first.info.addrs[0]!]
  servers.push(...await Promise.all([1, 2].map(async (i) => await startAgentProcess({ name: `serve-${i}`, dataDir: join(dir, `serve-${i}`), args: [...loopback, ...boot, ...serve] }))))
  entries.push(...await Promise.all([0, 1, 2].map(async (i) => await startAgentProcess({ name: `entry-${i}`, dataDir: join(dir, `entry-${i}`), args: [...loopback, ...boot] }))))
  for (const e of entries) {
    await waitFor(`${e.name} to see 3 ready runners`, async () => {
      const view = await getJson<View>(`${e.info.api}/mesh/view`)
      return view.nodes.filter((n) => n.connected && n.runners.some((r) => r.model === 'tiny' && r.state === 'ready')).length === 3
    }, 60_000)
  }
  for (const s of servers) {
    const pid = (await getJson<{ runners: Array<{ pid?: number }> }>(`${s.info.api}/admin/runners`)).runners[0]?.pid
    if (pid != null) runnerPids.set(s.info.peerId, pid)
  }
}, 120_000)

afterAll(async () => {
  for (const s of servers) killQuietly(s.pid, 'SIGCONT')
  await Promise.all([...servers, ...entries].map(async (p) => { await p.stop(5000) }))
  for (const pid of runnerPids.values()) killQuietly(pid, 'SIGKILL')
  await rm(dir, { recursive: true, force: true })
})

describe('requests over 3 serving hosts from 3 entry agents', () => {
  it('completes a burst from every entry without any host running more than its slots', async () => {
    const burst = entries.flatMap((e, i) => Array.from({ length: 8 }, async (_, j) => await chat(e, { max_tokens: 48, ignore_eos: true, messages: [{ role: 'user', content: `burst ${i}-${j}` }] })))
    const results = await Promise.all(burst)
    expect(results.map((r) => r.status)).toEqual(results.map(() => 200))
    const served = new Set(results.map((r) => r.headers['x-llmesh-node']))
    expect(served.size).toBeGreaterThan(1)
    let granted = 0
    for (const s of servers) {
      const { admission } = await getJson<Admission>(`${s.info.api}/admin/admission`)
      for (const a of admission) {
        expect(a.peakBusy).toBeLessThanOrEqual(a.slots)
        granted += a.granted
      }
    }
    expect(granted).toBeGreaterThanOrEqual(24)
  }, 60_000)

  it('routes round-robin per request to every host in turn', async () => {
    // the burst's last heartbeats may still call a host full (busy slots, other routers' claims):
    // full hosts rank after free ones, so wait until the view is idle
    await waitFor('every host to be idle in the view', async () => {
      const view = await getJson<View>(`${entries[0]!.info.api}/mesh/view`)
      return view.nodes.filter((n) => n.runners.length > 0 && n.metrics?.slotsBusy === 0).length === 3 &&
        view.nodes.every((n) => Object.keys(n.metrics?.claims ?? {}).length === 0)
    }, 15_000)
    const nodes = new Set<string>()
    for (let i = 0; i < 3; i++) {
      const r = await chat(entries[0]!, { max_tokens: 2, messages: [{ role: 'user', content: `rr ${i}` }] }, { 'x-llmesh-strategy': 'round-robin' })
      expect(r.status).toBe(200)
      expect(String(r.headers['x-llmesh-route'])).toContain('strategy=round-robin')
      nodes.add(String(r.headers['x-llmesh-node']))
    }
    expect(nodes.size).toBe(3)
  })

  it('fails over to another host when the chosen one dies before the first token', async () => {
    const entry = entries[1]!
    const body = { max_tokens: 4, messages: [{ role: 'user', content: 'affinity keeps me on one host' }] }
    const affinity = { 'x-llmesh-strategy': 'prefix-affinity' }
    const probe = await chat(entry, body, affinity)
    expect(probe.status).toBe(200)
    const victimId = String(probe.headers['x-llmesh-node'])
    const victim = servers.find((s) => s.info.peerId === victimId)!
    // freeze the host the conversation sticks to, send, and kill it once the entry has claimed it
    process.kill(victim.pid, 'SIGSTOP')
    const pending = chat(entry, body, affinity)
    await waitFor('the entry to claim the frozen host', async () => {
      const view = await getJson<View>(`${entry.info.api}/mesh/view`)
      return (view.nodes.find((n) => n.self)?.metrics?.claims[victimId] ?? 0) > 0
    }, 10_000)
    await victim.kill()
    killQuietly(runnerPids.get(victimId), 'SIGKILL')
    const res = await pending
    expect(res.status).toBe(200)
    expect(res.headers['x-llmesh-node']).not.toBe(victimId)
    expect(String(res.headers['x-llmesh-route'])).toMatch(/tried \w+: connect/)
    expect(JSON.parse(res.text)).toMatchObject({ object: 'chat.completion' })
  }, 30_000)

  it('ends the stream with an error event when the serving host dies mid-stream', async () => {
    const entry = entries[2]!
    const res = await request(`${entry.info.api}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tiny', stream: true, max_tokens: 1500, ignore_eos: true, messages: [{ role: 'user', content: 'a long story' }] })
    })
    expect(res.statusCode).toBe(200)
    const victimId = String(res.headers['x-llmesh-node'])
    const victim = servers.find((s) => s.info.peerId === victimId)
    expect(victim).toBeDefined()
    let text = ''
    let killed = false
    for await (const chunk of res.body) {
      text += (chunk as Buffer).toString('utf8')
      if (!killed) {
        killed = true
        await victim!.kill()
        killQuietly(runnerPids.get(victimId), 'SIGKILL')
      }
    }
    expect(text).not.toContain('[DONE]')
    const last = text.trim().split('\n\n').at(-1)!
    expect(last).toMatch(/^data: \{"error"/)
    expect(last).toContain('peer_unreachable')
  }, 30_000)
})
