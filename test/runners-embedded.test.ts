/**
 * The embedded runner (node-llama-cpp's prebuilt binaries, in-process) on the tiny model: the
 * zero-setup default when no llama-server binary is configured. Same `infer` contract as
 * llama-server: OpenAI JSON, or SSE `chat.completion.chunk`s ending with `data: [DONE]`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { EmbeddedRunner, RunnerManager, readAll, silentLogger, waitFor } from './runners-helpers.js'

const model = process.env['LLMESH_TEST_MODEL']!
let manager: RunnerManager

beforeAll(async () => {
  // threads: 1 — the tiny model is slower with more threads than cores allow (2-core CI)
  manager = new RunnerManager({ logger: silentLogger(), models: [{ path: model, name: 'tiny' }], slots: 2, ctxSize: 1024, probeGpus: false, embedded: { threads: 1, gpu: false } })
  await manager.start()
  await manager.waitReady(60_000)
}, 120_000)

afterAll(async () => {
  await manager?.stop()
})

describe('embedded runner (node-llama-cpp)', () => {
  it('publishes its load progress while loading, up to 1, and none once ready', async () => {
    const r = new EmbeddedRunner({ id: 'progress', logger: silentLogger(), modelPath: model, modelName: 'tiny', slots: 1, ctxSize: 256, threads: 1, gpu: false })
    const seen: Array<{ state: string, progress?: number }> = []
    r.onState((state, info) => { seen.push({ state, ...(info.progress != null ? { progress: info.progress } : {}) }) })
    try {
      await r.start()
      const progress = seen.filter((s) => s.progress != null).map((s) => s.progress!)
      expect(progress.length).toBeGreaterThan(0)
      expect(seen.filter((s) => s.progress != null).every((s) => s.state === 'loading')).toBe(true)
      for (let i = 1; i < progress.length; i++) expect(progress[i]!).toBeGreaterThan(progress[i - 1]!)
      expect(progress.at(-1)).toBe(1)
      expect(seen.at(-1)).toEqual({ state: 'ready' })
      expect(r.info().progress).toBeUndefined()
    } finally {
      await r.stop()
    }
  })

  it('is what the manager uses when no llama-server binary is configured', () => {
    const [r] = manager.runners()
    expect(r).toBeInstanceOf(EmbeddedRunner)
    expect(r!.info()).toMatchObject({ kind: 'embedded', model: 'tiny', state: 'ready', slots: 2 })
  })

  it('streams OpenAI SSE chunks ending with [DONE]', async () => {
    const res = await manager.infer('tiny', '/v1/chat/completions', { stream: true, max_tokens: 8, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'hi' }] })
    expect(res.status).toBe(200)
    expect(res.contentType).toBe('text/event-stream')
    const events = (await readAll(res)).split('\n\n').filter((e) => e.startsWith('data: '))
    expect(events.at(-1)).toBe('data: [DONE]')
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e.slice(6)) as { object: string, model: string, choices: Array<{ finish_reason: string | null }>, usage?: { completion_tokens: number } })
    expect(chunks.every((c) => c.object === 'chat.completion.chunk' && c.model === 'tiny')).toBe(true)
    expect(chunks.some((c) => c.choices[0]?.finish_reason != null)).toBe(true)
    expect(chunks.at(-1)?.usage?.completion_tokens).toBeGreaterThan(0)
  })

  it('answers a non-streaming completion with usage, and serves concurrent requests up to its slots', async () => {
    const body = { max_tokens: 6, messages: [{ role: 'system', content: 'be brief' }, { role: 'user', content: 'count' }] }
    const results = await Promise.all([1, 2].map(async () => JSON.parse(await readAll(await manager.infer('tiny', '/v1/chat/completions', body))) as {
      object: string, choices: Array<{ message: { role: string, content: string }, finish_reason: string }>, usage: { prompt_tokens: number, completion_tokens: number }
    }))
    for (const r of results) {
      expect(r.object).toBe('chat.completion')
      expect(r.choices[0]?.message.role).toBe('assistant')
      expect(r.usage.prompt_tokens).toBeGreaterThan(0)
      expect(r.usage.completion_tokens).toBeGreaterThan(0)
    }
    expect(manager.runners()[0]!.state).toBe('ready')
    expect((await manager.runners()[0]!.capacity()).busy).toBe(0)
  })

  it('stops generating when the reader breaks out early', async () => {
    const res = await manager.infer('tiny', '/v1/chat/completions', { stream: true, max_tokens: 100_000, messages: [{ role: 'user', content: 'go on' }] })
    let n = 0
    for await (const _ of res.body) if (++n === 2) break
    // the generation ends once its abort reaches the native side
    await waitFor('slot released', async () => (await manager.runners()[0]!.capacity()).busy === 0)
    // and the slot is usable again
    expect(await readAll(await manager.infer('tiny', '/v1/chat/completions', { stream: true, max_tokens: 2, messages: [{ role: 'user', content: 'x' }] }))).toContain('[DONE]')
  })
})
