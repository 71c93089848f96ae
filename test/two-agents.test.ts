/**
 * Two real agent processes on loopback: B serves the tiny model on a real llama-server, A has no
 * model. Requests sent to A must be routed to B over /llmesh/infer/1 and served by B's runner.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { execFile } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { request } from 'undici'
import { llmeshBin, startAgentProcess, type AgentProcess, LOOPBACK_AGENT_ARGS, waitForReadyRunner } from '@llmesh/fixtures'

const llamaServer = process.env['LLMESH_TEST_LLAMA_SERVER']!
const model = process.env['LLMESH_TEST_MODEL']!
const loopback = LOOPBACK_AGENT_ARGS

let dir: string
let a: AgentProcess
let b: AgentProcess
let bRunner: { id: string, port: number, pid: number }


async function getJson<T> (url: string): Promise<T> {
  const res = await request(url)
  return await res.body.json() as T
}

/** llama-server's own counter of generated tokens, from its Prometheus endpoint. */
async function tokensPredicted (port: number): Promise<number> {
  const text = await (await request(`http://127.0.0.1:${port}/metrics`)).body.text()
  const m = /^llamacpp:tokens_predicted_total\s+([\d.e+]+)/m.exec(text)
  if (m?.[1] == null) throw new Error(`no tokens_predicted_total in /metrics:\n${text.slice(0, 500)}`)
  return Number(m[1])
}

async function chat (body: object): Promise<{ status: number, headers: Record<string, string | string[] | undefined>, text: string }> {
  const res = await request(`${a.info.api}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body)
  })
  return { status: res.statusCode, headers: res.headers, text: await res.body.text() }
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'llmesh-two-agents-'))
  b = await startAgentProcess({
    name: 'host-b',
    dataDir: join(dir, 'b'),
    args: [...loopback, '--model', `tiny=${model}`, '--llama-server', llamaServer, '--slots', '2']
  })
  a = await startAgentProcess({ name: 'host-a', dataDir: join(dir, 'a'), args: [...loopback, '--bootstrap', b.info.addrs[0]!] })
  await waitForReadyRunner(a, b, { model: 'tiny' })
  const runners = await getJson<{ runners: Array<{ id: string, port: number, pid: number }> }>(`${b.info.api}/admin/runners`)
  bRunner = runners.runners[0]!
}, 120_000)

afterAll(async () => {
  await Promise.all([a?.stop(), b?.stop()])
  // the runner must not outlive its agent
  if (bRunner?.pid != null) expect(() => process.kill(bRunner.pid, 0)).toThrow()
  await rm(dir, { recursive: true, force: true })
})

describe('a request to agent A is served by agent B\'s llama-server', () => {
  it('streams an OpenAI SSE completion routed to B, and B\'s runner did the work', async () => {
    const before = await tokensPredicted(bRunner.port)
    const res = await chat({ model: 'tiny', stream: true, max_tokens: 12, messages: [{ role: 'user', content: 'hello mesh' }] })
    expect(res.status).toBe(200)
    expect(res.headers['content-type']).toContain('text/event-stream')
    expect(res.headers['x-llmesh-node']).toBe(b.info.peerId)
    expect(res.headers['x-llmesh-runner']).toBe(bRunner.id)
    expect(String(res.headers['x-llmesh-route'])).toContain('remote')
    const events = res.text.split('\n\n').filter((e) => e.startsWith('data: '))
    expect(events.at(-1)).toBe('data: [DONE]')
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e.slice(6)) as { object: string, model: string, choices: Array<{ delta: { content?: string } }> })
    expect(chunks.length).toBeGreaterThan(1)
    expect(chunks.every((c) => c.object === 'chat.completion.chunk' && c.model === 'tiny')).toBe(true)
    const after = await tokensPredicted(bRunner.port)
    expect(after).toBeGreaterThan(before)
  })

  it('answers a non-streaming completion with usage from B', async () => {
    const res = await chat({ model: 'tiny', max_tokens: 6, messages: [{ role: 'user', content: 'count' }] })
    expect(res.status).toBe(200)
    expect(res.headers['x-llmesh-node']).toBe(b.info.peerId)
    const body = JSON.parse(res.text) as { object: string, choices: Array<{ message: { role: string } }>, usage: { completion_tokens: number } }
    expect(body.object).toBe('chat.completion')
    expect(body.choices[0]?.message.role).toBe('assistant')
    expect(body.usage.completion_tokens).toBeGreaterThan(0)
  })

  it('lists the mesh\'s models on A, which has none of its own', async () => {
    const models = await getJson<{ data: Array<{ id: string }> }>(`${a.info.api}/v1/models`)
    expect(models.data.map((m) => m.id)).toEqual(['tiny'])
  })

  it('answers bad input in OpenAI\'s error shape and keeps serving', async () => {
    const unknown = await chat({ model: 'nope', messages: [{ role: 'user', content: 'x' }] })
    expect(unknown.status).toBe(404)
    expect(JSON.parse(unknown.text)).toMatchObject({ error: { type: 'invalid_request_error', code: 'model_not_found' } })
    expect(JSON.parse(unknown.text).error.message).toContain('tiny')

    const invalid = await chat({ model: 'tiny', messages: [] })
    expect(invalid.status).toBe(400)
    expect(JSON.parse(invalid.text)).toMatchObject({ error: { type: 'invalid_request_error', code: 'invalid_request' } })

    const garbage = await request(`${a.info.api}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{not json' })
    expect(garbage.statusCode).toBe(400)
    expect(await garbage.body.json()).toMatchObject({ error: { type: 'invalid_request_error' } })

    const ok = await chat({ model: 'tiny', max_tokens: 2, messages: [{ role: 'user', content: 'still there?' }] })
    expect(ok.status).toBe(200)
  })

  it('shows both hosts in `llmesh status` run against A', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, [llmeshBin(), 'status', '--api', a.info.api, '--json'])
    const status = JSON.parse(stdout) as { nodes: Array<{ name: string, connected: boolean, runners: Array<{ state: string }> }> }
    expect(status.nodes.map((n) => n.name).sort()).toEqual(['host-a', 'host-b'])
    expect(status.nodes.every((n) => n.connected)).toBe(true)
    expect(status.nodes.find((n) => n.name === 'host-b')?.runners[0]?.state).toBe('ready')
  })
})
