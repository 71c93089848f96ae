/**
 * Adopted servers: Ollama and mlx_lm.server. Neither runs here, so each is played by a small
 * local HTTP server on 127.0.0.1 (port 0):
 * - Ollama answers `/api/tags`, `/api/ps` and `/api/chat` (NDJSON stream) as Ollama 0.x does;
 * - mlx_lm.server replays a recorded exchange. The recording is reconstructed from
 *   mlx_lm/server.py's response code (field order, `: keepalive` comments, `[DONE]`), NOT
 *   captured from a real server: the MLX adapter is untested against real mlx_lm.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { MlxRunner, RunnerManager, readAll, silentLogger, waitFor } from './runners-helpers.js'

const logger = silentLogger()

async function listen (handler: (req: IncomingMessage, res: ServerResponse, body: string) => void): Promise<{ server: Server, url: string }> {
  const server = createServer((req, res) => {
    let body = ''
    req.on('data', (c: Buffer) => { body += c.toString() })
    req.on('end', () => { handler(req, res, body) })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const addr = server.address() as { port: number }
  return { server, url: `http://127.0.0.1:${addr.port}` }
}

// ---------------------------------------------------------------------------------------------
// fake Ollama
// ---------------------------------------------------------------------------------------------

const digest = (c: string): string => c.repeat(64)
let ollamaModels = [
  { name: 'llama3.2:latest', model: 'llama3.2:latest', modified_at: '2026-10-01T10:00:00.000Z', size: 2019393189, digest: digest('a'), details: { parent_model: '', format: 'gguf', family: 'llama', families: ['llama'], parameter_size: '3.2B', quantization_level: 'Q4_K_M' } },
  { name: 'hang:latest', model: 'hang:latest', modified_at: '2026-10-01T10:00:00.000Z', size: 1000, digest: digest('b'), details: { format: 'gguf', family: 'llama', parameter_size: '1M', quantization_level: 'F16' } }
]
const ollamaRequests: Array<Record<string, unknown>> = []
const openSockets = new Set<ServerResponse>()

function ollamaHandler (req: IncomingMessage, res: ServerResponse, body: string): void {
  const json = (status: number, obj: unknown): void => { res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' }).end(JSON.stringify(obj)) }
  if (req.method === 'GET' && req.url === '/api/tags') return json(200, { models: ollamaModels })
  if (req.method === 'GET' && req.url === '/api/ps') return json(200, { models: [{ ...ollamaModels[0], expires_at: '2026-10-01T10:05:00.000Z', size_vram: 2019393189 }] })
  if (req.method === 'POST' && req.url === '/api/chat') {
    const r = JSON.parse(body) as { model: string, stream?: boolean, options?: { num_predict?: number } }
    ollamaRequests.push(r)
    if (!ollamaModels.some((m) => m.name === r.model)) return json(404, { error: `model '${r.model}' not found` })
    res.writeHead(200, { 'content-type': 'application/x-ndjson' })
    const line = (obj: object): void => { res.write(JSON.stringify(obj) + '\n') }
    const created = '2026-10-01T10:00:01.000Z'
    if (r.model === 'hang:latest') {
      // one token, then nothing: a hung backend
      line({ model: r.model, created_at: created, message: { role: 'assistant', content: 'Hel' }, done: false })
      openSockets.add(res)
      return
    }
    const words = ['Hello', ' from', ' Ollama', '!']
    let i = 0
    const tick = (): void => {
      if (i < words.length) {
        line({ model: r.model, created_at: created, message: { role: 'assistant', content: words[i++] }, done: false })
        setTimeout(tick, 5)
        return
      }
      line({ model: r.model, created_at: created, message: { role: 'assistant', content: '' }, done_reason: 'stop', done: true, total_duration: 123456789, load_duration: 1234567, prompt_eval_count: 11, prompt_eval_duration: 2345678, eval_count: 4, eval_duration: 3456789 })
      res.end()
    }
    tick()
    return
  }
  json(404, { error: 'not found' })
}

// ---------------------------------------------------------------------------------------------
// recorded mlx_lm.server exchange (reconstructed from mlx_lm/server.py, see the file comment)
// ---------------------------------------------------------------------------------------------

const MLX_FINGERPRINT = '0.28.3-0.29.2-macOS-15.6.1-arm64-arm-64bit-applegpu_g15s'
const MLX_RECORDING = {
  models: { object: 'list', data: [{ id: 'mlx-community/Qwen2.5-0.5B-Instruct-4bit', object: 'model', created: 1759000000 }] },
  stream: [
    ': keepalive 9/9\n\n',
    `data: {"id": "chatcmpl-6f1c", "system_fingerprint": "${MLX_FINGERPRINT}", "object": "chat.completion.chunk", "model": "default_model", "created": 1759000001, "choices": [{"index": 0, "finish_reason": null, "delta": {"role": "assistant", "content": "Hello"}}]}\n\n`,
    `data: {"id": "chatcmpl-6f1c", "system_fingerprint": "${MLX_FINGERPRINT}", "object": "chat.completion.chunk", "model": "default_model", "created": 1759000001, "choices": [{"index": 0, "finish_reason": null, "delta": {"role": "assistant", "content": " there"}}]}\n\n`,
    `data: {"id": "chatcmpl-6f1c", "system_fingerprint": "${MLX_FINGERPRINT}", "object": "chat.completion.chunk", "model": "default_model", "created": 1759000001, "choices": [{"index": 0, "finish_reason": "stop", "delta": {"role": "assistant"}}]}\n\n`,
    'data: [DONE]\n\n'
  ],
  completion: { id: 'chatcmpl-7a2d', system_fingerprint: MLX_FINGERPRINT, object: 'chat.completion', model: 'default_model', created: 1759000002, choices: [{ index: 0, finish_reason: 'length', message: { role: 'assistant', content: 'Hello there' } }], usage: { prompt_tokens: 9, completion_tokens: 2, total_tokens: 11, prompt_tokens_details: { cached_tokens: 0 } } }
}
const mlxRequests: Array<Record<string, unknown>> = []

function mlxHandler (req: IncomingMessage, res: ServerResponse, body: string): void {
  if (req.method === 'GET' && req.url === '/health') return void res.writeHead(200, { 'content-type': 'application/json' }).end('{"status": "ok"}')
  if (req.method === 'GET' && req.url === '/v1/models') return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(MLX_RECORDING.models))
  if (req.method === 'POST' && req.url === '/v1/chat/completions') {
    const r = JSON.parse(body) as Record<string, unknown>
    mlxRequests.push(r)
    if (r['max_tokens'] === 99) {
      // half an answer, then nothing: a hung server
      res.writeHead(200, { 'content-type': 'application/json' }).write('{"id": "chatcmpl-8b3e", ')
      openSockets.add(res)
      return
    }
    if (r['stream'] === true) {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
      for (const part of MLX_RECORDING.stream) res.write(part)
      return void res.end()
    }
    return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(MLX_RECORDING.completion))
  }
  res.writeHead(404, { 'content-type': 'application/json' }).end('Not Found')
}

let ollama: { server: Server, url: string }
let mlx: { server: Server, url: string }
let manager: RunnerManager

beforeAll(async () => {
  ollama = await listen(ollamaHandler)
  mlx = await listen(mlxHandler)
  manager = new RunnerManager({
    logger,
    probeGpus: false,
    ollama: { url: ollama.url, refreshMs: 60_000 },
    mlx: { url: mlx.url, model: 'qwen-mlx' },
    stallTimeoutMs: 300,
    stallsBeforeUnhealthy: 5,
    restart: { minDelayMs: 50, jitter: 0 }
  })
  await manager.start()
  await manager.waitReady(10_000)
})

afterAll(async () => {
  await manager?.stop()
  for (const s of openSockets) s.destroy()
  for (const s of [ollama?.server, mlx?.server]) {
    s?.closeAllConnections()
    await new Promise((resolve) => s?.close(resolve))
  }
})

describe('Ollama adapter (fake Ollama on loopback)', () => {
  it('adopts every model Ollama lists, one runner each, and publishes them without paths', () => {
    const ollamaRunners = manager.runners().filter((r) => r.kind === 'ollama')
    expect(ollamaRunners.map((r) => r.model).sort()).toEqual(['hang:latest', 'llama3.2:latest'])
    expect(ollamaRunners.every((r) => r.state === 'ready' && r.info().slots === 1)).toBe(true)
    const info = manager.models().find((m) => m.name === 'llama3.2:latest')
    expect(info).toEqual({ name: 'llama3.2:latest', sizeBytes: 2019393189, digest: digest('a'), format: 'gguf', source: 'ollama', architecture: 'llama', quantization: 'Q4_K_M' })
  })

  it('translates a streaming OpenAI request to /api/chat and the NDJSON answer to SSE chunks', async () => {
    const res = await manager.infer('llama3.2:latest', '/v1/chat/completions', {
      stream: true, max_tokens: 32, temperature: 0.2, stop: ['\n\n'], stream_options: { include_usage: true },
      messages: [{ role: 'system', content: 'be kind' }, { role: 'user', content: [{ type: 'text', text: 'hi' }] }]
    })
    expect(res.contentType).toBe('text/event-stream')
    const events = (await readAll(res)).split('\n\n').filter((e) => e.startsWith('data: '))
    expect(events.at(-1)).toBe('data: [DONE]')
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e.slice(6)) as { object: string, model: string, choices: Array<{ delta: { content?: string, role?: string }, finish_reason: string | null }>, usage?: { prompt_tokens: number, completion_tokens: number } })
    expect(chunks.every((c) => c.object === 'chat.completion.chunk' && c.model === 'llama3.2:latest')).toBe(true)
    expect(chunks[0]?.choices[0]?.delta.role).toBe('assistant')
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe('Hello from Ollama!')
    expect(chunks.find((c) => c.choices[0]?.finish_reason != null)?.choices[0]?.finish_reason).toBe('stop')
    expect(chunks.at(-1)?.usage).toMatchObject({ prompt_tokens: 11, completion_tokens: 4 })
    expect(ollamaRequests.at(-1)).toEqual({
      model: 'llama3.2:latest', stream: true,
      messages: [{ role: 'system', content: 'be kind' }, { role: 'user', content: 'hi' }],
      options: { num_predict: 32, temperature: 0.2, stop: ['\n\n'] }
    })
  })

  it('answers a non-streaming request with one chat.completion', async () => {
    const res = await manager.infer('llama3.2:latest', '/v1/chat/completions', { messages: [{ role: 'user', content: 'hi' }] })
    const body = JSON.parse(await readAll(res)) as { object: string, choices: Array<{ message: { content: string } }>, usage: { total_tokens: number } }
    expect(body.object).toBe('chat.completion')
    expect(body.choices[0]?.message.content).toBe('Hello from Ollama!')
    expect(body.usage.total_tokens).toBe(15)
  })

  it('aborts a stream that stops producing tokens with STALLED', async () => {
    const res = await manager.infer('hang:latest', '/v1/chat/completions', { stream: true, messages: [{ role: 'user', content: 'hi' }] })
    await expect(readAll(res)).rejects.toMatchObject({ code: 'STALLED' })
    expect(manager.get(manager.find('hang:latest')!.id)!.describe().stalls).toBe(1)
  })

  it('passes Ollama\'s refusal on as an OpenAI error with its status', async () => {
    const listed = ollamaModels
    ollamaModels = ollamaModels.filter((m) => m.name !== 'llama3.2:latest')
    try {
      const res = await manager.infer('llama3.2:latest', '/v1/chat/completions', { stream: true, messages: [{ role: 'user', content: 'hi' }] })
      expect(res.status).toBe(404)
      expect(JSON.parse(await readAll(res))).toMatchObject({ error: { message: "Ollama: model 'llama3.2:latest' not found", type: 'invalid_request_error' } })
    } finally {
      ollamaModels = listed
    }
  })

  it('drops the runner of a model Ollama no longer lists', async () => {
    ollamaModels = ollamaModels.filter((m) => m.name !== 'hang:latest')
    await manager.refreshOllama()
    expect(manager.runners().filter((r) => r.kind === 'ollama').map((r) => r.model)).toEqual(['llama3.2:latest'])
  })
})

describe('MLX adapter (recorded mlx_lm.server exchange; untested against real mlx_lm)', () => {
  it('is ready when /health and /v1/models answer', () => {
    const r = manager.runners().find((x) => x.kind === 'mlx')
    expect(r).toBeInstanceOf(MlxRunner)
    expect(r!.info()).toMatchObject({ kind: 'mlx', model: 'qwen-mlx', state: 'ready', slots: 1 })
  })

  it('passes a streaming request through, naming the model mlx_lm.server was started with', async () => {
    const res = await manager.infer('qwen-mlx', '/v1/chat/completions', { stream: true, max_tokens: 4, messages: [{ role: 'user', content: 'hi' }] })
    const text = await readAll(res)
    expect(text).toBe(MLX_RECORDING.stream.join(''))
    expect(mlxRequests.at(-1)).toMatchObject({ model: 'default_model', stream: true, max_tokens: 4 })
  })

  it('passes a non-streaming request through', async () => {
    const res = await manager.infer('qwen-mlx', '/v1/chat/completions', { max_tokens: 2, messages: [{ role: 'user', content: 'hi' }] })
    expect(JSON.parse(await readAll(res))).toEqual(MLX_RECORDING.completion)
  })

  it('aborts a non-streaming answer not complete within its time limit with STALLED, and serves the next request', async () => {
    const r = new MlxRunner({ id: 'mlx-timeout', logger, url: mlx.url, modelName: 'qwen-mlx', nonStreamTimeoutMs: 300, restart: false })
    await r.start()
    try {
      await expect(r.infer('/v1/chat/completions', { max_tokens: 99, messages: [{ role: 'user', content: 'hi' }] })).rejects.toMatchObject({
        code: 'STALLED',
        message: expect.stringContaining('sent no complete response for 300 ms')
      })
      expect(r.describe().stalls).toBe(1)
      // and the next request is served
      expect(JSON.parse(await readAll(await r.infer('/v1/chat/completions', { max_tokens: 2, messages: [{ role: 'user', content: 'hi' }] })))).toEqual(MLX_RECORDING.completion)
    } finally {
      await r.stop()
    }
  })

  it('fails when the server goes away and comes back when it returns', async () => {
    const r = manager.runners().find((x) => x.kind === 'mlx')!
    expect((await r.health()).ok).toBe(true)
    mlx.server.closeAllConnections()
    await new Promise((resolve) => mlx.server.close(resolve))
    const health = await r.health()
    expect(health.ok).toBe(false)
    const port = Number(new URL(mlx.url).port)
    await new Promise<void>((resolve) => mlx.server.listen(port, '127.0.0.1', resolve))
    await waitFor('mlx health back', async () => (await r.health()).ok)
  })
})
