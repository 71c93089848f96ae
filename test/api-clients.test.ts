/**
 * The official OpenAI and Ollama npm clients against a real agent: entry agent A (no model)
 * routes to agent B, which serves the tiny model on a real llama-server (2 slots, queue of 1,
 * stall timeout 2 s from a --config file). Also: strategy and priority headers, errors in each
 * API's own shape, the body size limit, a full queue (429 + Retry-After), and a stalled runner
 * (SIGSTOP) caught within the stall timeout.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request } from 'undici'
import OpenAI from 'openai'
import { Ollama } from 'ollama'
import { startAgentProcess, type AgentProcess, LOOPBACK_AGENT_ARGS, waitForReadyRunner } from '@llmesh/fixtures'

const llamaServer = process.env['LLMESH_TEST_LLAMA_SERVER']!
const model = process.env['LLMESH_TEST_MODEL']!
const loopback = LOOPBACK_AGENT_ARGS

let dir: string
let a: AgentProcess
let b: AgentProcess
let runnerPid: number | undefined
let openai: OpenAI
let ollama: Ollama


async function getJson<T> (url: string): Promise<T> {
  const res = await request(url)
  return await res.body.json() as T
}

function killQuietly (pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid == null) return
  try { process.kill(pid, signal) } catch { /* gone already */ }
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'llmesh-api-clients-'))
  const config = join(dir, 'b.json')
  await writeFile(config, JSON.stringify({ stallTimeoutMs: 2000, queue: { capacity: 1 } }))
  b = await startAgentProcess({
    name: 'host-b',
    dataDir: join(dir, 'b'),
    args: [...loopback, '--config', config, '--model', `tiny=${model}`, '--llama-server', llamaServer, '--slots', '2']
  })
  // a small body limit on A: an oversized body then fits in the socket buffers, so the client has
  // written it all before the 413 comes back (a 9 MiB body races the early answer: EPIPE)
  const configA = join(dir, 'a.json')
  await writeFile(configA, JSON.stringify({ api: { bodyLimit: 64 * 1024 } }))
  a = await startAgentProcess({ name: 'host-a', dataDir: join(dir, 'a'), args: [...loopback, '--config', configA, '--bootstrap', b.info.addrs[0]!] })
  await waitForReadyRunner(a, b, { model: 'tiny' })
  runnerPid = (await getJson<{ runners: Array<{ pid?: number }> }>(`${b.info.api}/admin/runners`)).runners[0]?.pid
  openai = new OpenAI({ baseURL: `${a.info.api}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 30_000 })
  ollama = new Ollama({ host: a.info.api })
}, 120_000)

afterAll(async () => {
  killQuietly(runnerPid, 'SIGCONT')
  await Promise.all([a?.stop(5000), b?.stop(5000)])
  killQuietly(runnerPid, 'SIGKILL')
  await rm(dir, { recursive: true, force: true })
})

describe('the OpenAI client against an agent', () => {
  it('gets a chat completion routed to B, with the route headers', async () => {
    const { data, response } = await openai.chat.completions.create({ model: 'tiny', max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] }).withResponse()
    expect(data.object).toBe('chat.completion')
    expect(data.choices[0]?.message.role).toBe('assistant')
    expect(data.usage?.completion_tokens).toBeGreaterThan(0)
    expect(response.headers.get('x-llmesh-node')).toBe(b.info.peerId)
    expect(response.headers.get('x-llmesh-route')).toContain('strategy=performance')
  })

  it('streams a chat completion', async () => {
    const stream = await openai.chat.completions.create({ model: 'tiny', max_tokens: 12, stream: true, messages: [{ role: 'user', content: 'stream please' }] })
    let chunks = 0
    let finish: string | null | undefined
    for await (const chunk of stream) {
      chunks++
      finish = chunk.choices[0]?.finish_reason ?? finish
    }
    expect(chunks).toBeGreaterThan(1)
    expect(finish).toBeTruthy()
  })

  it('gets legacy completions, streaming and not', async () => {
    const c = await openai.completions.create({ model: 'tiny', prompt: 'Once upon a time', max_tokens: 6 })
    expect(c.choices[0]?.text).toBeTypeOf('string')
    const s = await openai.completions.create({ model: 'tiny', prompt: 'Once upon a time', max_tokens: 6, stream: true })
    let n = 0
    for await (const _ of s) n++
    expect(n).toBeGreaterThan(0)
  })

  it('lists the mesh\'s models', async () => {
    const page = await openai.models.list()
    expect(page.data.map((m) => m.id)).toEqual(['tiny'])
  })

  it('answers embeddings on a runner without them with a clear error in OpenAI\'s shape', async () => {
    const err = await openai.embeddings.create({ model: 'tiny', input: 'hello' }).then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(OpenAI.APIError)
    expect((err as InstanceType<typeof OpenAI.APIError>).status).toBe(501)
    expect((err as Error).message).toMatch(/embedding/i)
  })

  it('takes the strategy per request from x-llmesh-strategy, and refuses a bad one or a bad priority with 400', async () => {
    const { response } = await openai.chat.completions.create({ model: 'tiny', max_tokens: 2, messages: [{ role: 'user', content: 'x' }] }, { headers: { 'x-llmesh-strategy': 'round-robin', 'x-llmesh-priority': '9' } }).withResponse()
    expect(response.headers.get('x-llmesh-route')).toContain('strategy=round-robin')
    const bad = await openai.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'x' }] }, { headers: { 'x-llmesh-strategy': 'fastest-please' } }).then(() => undefined, (e: unknown) => e)
    expect(bad).toBeInstanceOf(OpenAI.BadRequestError)
    expect((bad as Error).message).toContain('prefix-affinity')
    const badPriority = await openai.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'x' }] }, { headers: { 'x-llmesh-priority': '11' } }).then(() => undefined, (e: unknown) => e)
    expect(badPriority).toBeInstanceOf(OpenAI.BadRequestError)
  })

  it('answers an unknown model with 404 listing the mesh\'s models, and an oversized body with 413', async () => {
    const err = await openai.chat.completions.create({ model: 'nope', messages: [{ role: 'user', content: 'x' }] }).then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(OpenAI.NotFoundError)
    expect((err as Error).message).toContain('tiny')
    const big = await request(`${a.info.api}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tiny', messages: [{ role: 'user', content: 'x'.repeat(200 * 1024) }] })
    })
    expect(big.statusCode).toBe(413)
    expect(await big.body.json()).toMatchObject({ error: { type: 'invalid_request_error' } })
  })
})

describe('the Ollama client against an agent', () => {
  it('chats, streaming (NDJSON pieces and a final done) and not', async () => {
    const whole = await ollama.chat({ model: 'tiny', messages: [{ role: 'user', content: 'hello' }], options: { num_predict: 8 } })
    expect(whole.done).toBe(true)
    expect(whole.message.role).toBe('assistant')
    expect(whole.eval_count).toBeGreaterThan(0)
    const parts = await ollama.chat({ model: 'tiny', messages: [{ role: 'user', content: 'hello' }], options: { num_predict: 8 }, stream: true })
    const seen: Array<{ done: boolean, message: { content: string }, eval_count?: number, done_reason?: string }> = []
    for await (const p of parts) seen.push(p)
    expect(seen.length).toBeGreaterThan(1)
    expect(seen.slice(0, -1).every((p) => !p.done && typeof p.message.content === 'string')).toBe(true)
    const last = seen.at(-1)!
    expect(last.done).toBe(true)
    expect(last.eval_count).toBeGreaterThan(0)
    expect(['stop', 'length']).toContain(last.done_reason)
  })

  it('generates, streaming and not', async () => {
    const whole = await ollama.generate({ model: 'tiny', prompt: 'Why is the sky blue?', options: { num_predict: 6 } })
    expect(whole.done).toBe(true)
    expect(typeof whole.response).toBe('string')
    const parts = await ollama.generate({ model: 'tiny', prompt: 'Why?', options: { num_predict: 6 }, stream: true })
    let n = 0
    let done = false
    for await (const p of parts) { n++; done = p.done }
    expect(n).toBeGreaterThan(1)
    expect(done).toBe(true)
  })

  it('lists the mesh\'s models (tags) and the loaded runners (ps)', async () => {
    const tags = await ollama.list()
    expect(tags.models.map((m) => m.name)).toEqual(['tiny'])
    expect(tags.models[0]?.size).toBeGreaterThan(0)
    const ps = await ollama.ps()
    expect(ps.models.map((m) => m.name)).toEqual(['tiny'])
  })

  it('answers errors in Ollama\'s shape: unknown model 404, embeddings not supported', async () => {
    const err = await ollama.chat({ model: 'nope', messages: [{ role: 'user', content: 'x' }] }).then(() => undefined, (e: unknown) => e) as { status_code?: number, error?: string } | undefined
    expect(err?.status_code).toBe(404)
    expect(err?.error).toContain('tiny')
    const emb = await ollama.embed({ model: 'tiny', input: 'x' }).then(() => undefined, (e: unknown) => e) as { status_code?: number, error?: string } | undefined
    expect(emb?.status_code).toBe(501)
    expect(emb?.error).toMatch(/embedding/i)
    const raw = await request(`${a.info.api}/api/chat`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'tiny', messages: 'x' }) })
    expect(raw.statusCode).toBe(400)
    expect(await raw.body.json()).toMatchObject({ error: expect.stringContaining('messages') })
  })
})

describe('admission and stalls', () => {
  it('queues beyond the slots and answers 429 with Retry-After when the queue is full', async () => {
    const one = async (): Promise<{ status: number, retryAfter: string | undefined }> => {
      const res = await request(`${a.info.api}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'tiny', max_tokens: 300, ignore_eos: true, messages: [{ role: 'user', content: 'fill the slots' }] })
      })
      await res.body.text()
      return { status: res.statusCode, retryAfter: res.headers['retry-after'] as string | undefined }
    }
    const results = await Promise.all(Array.from({ length: 6 }, one))
    const ok = results.filter((r) => r.status === 200).length
    const full = results.filter((r) => r.status === 429)
    // 2 slots + 1 queued are served; the rest are refused with a Retry-After
    expect(ok).toBeGreaterThanOrEqual(3)
    expect(full.length).toBeGreaterThan(0)
    expect(ok + full.length).toBe(6)
    expect(full.every((r) => Number(r.retryAfter) >= 1)).toBe(true)
    const { admission } = await getJson<{ admission: Array<{ slots: number, peakBusy: number, peakQueue: number }> }>(`${b.info.api}/admin/admission`)
    expect(admission[0]!.peakBusy).toBeLessThanOrEqual(admission[0]!.slots)
    expect(admission[0]!.peakQueue).toBeLessThanOrEqual(1)
  })

  it('ends a stream whose runner stalls (SIGSTOP) with a clear error event', async () => {
    expect(runnerPid).toBeTypeOf('number')
    const res = await request(`${a.info.api}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tiny', stream: true, max_tokens: 1500, ignore_eos: true, messages: [{ role: 'user', content: 'a long answer' }] })
    })
    expect(res.statusCode).toBe(200)
    let text = ''
    let stopped = false
    try {
      for await (const chunk of res.body) {
        text += (chunk as Buffer).toString('utf8')
        if (!stopped) {
          stopped = true
          process.kill(runnerPid!, 'SIGSTOP')
        }
      }
    } finally {
      killQuietly(runnerPid, 'SIGCONT')
    }
    expect(text).not.toContain('[DONE]')
    const last = text.trim().split('\n\n').at(-1)!
    expect(last).toContain('"error"')
    expect(last).toMatch(/stall|no token/i)
  }, 30_000)
})
