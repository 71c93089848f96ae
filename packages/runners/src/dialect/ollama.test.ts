import { describe, expect, it } from 'vitest'
import { ChatCompletionWriter } from '../openai.js'
import {
  fromOllamaChat, ollamaChatToOpenAi, ollamaGenerateToOpenAi, ollamaLoaded, openAiErrorMessage, openAiEvents, textLines, toOllamaChat,
  toOllamaEmbeddings, toOllamaNdjson, toOllamaObject, type DialectClock
} from './ollama.js'

const enc = new TextEncoder()
async function * bytes (parts: string[]): AsyncGenerator<Uint8Array> { for (const p of parts) yield enc.encode(p) }
async function all<T> (it: AsyncIterable<T>): Promise<T[]> { const out: T[] = []; for await (const x of it) out.push(x); return out }

/** A clock that stands still: 1 ms after the start, at a fixed wall time. */
const clock: DialectClock = { iso: () => '2026-01-01T00:00:00.000Z', ns: () => 1_000_000n }

describe('Ollama NDJSON -> OpenAI (the runner adapter)', () => {
  it('handles lines split across chunks and ends with [DONE]', async () => {
    const lines = [
      '{"message":{"role":"assistant","content":"He"},"done":false}\n{"message":{"role":"assis',
      'tant","content":"y"},"done":false}\n',
      '{"message":{"role":"assistant","content":""},"done":true,"done_reason":"length","prompt_eval_count":3,"eval_count":2}\n'
    ]
    let out = ''
    for await (const c of fromOllamaChat(bytes(lines), new ChatCompletionWriter('m'), true, false)) out += new TextDecoder().decode(c)
    const events = out.split('\n\n').filter((e) => e !== '')
    expect(events.at(-1)).toBe('data: [DONE]')
    const parsed = events.slice(0, -1).map((e) => JSON.parse(e.slice(6)) as { choices: Array<{ delta: { content?: string }, finish_reason: string | null }> })
    expect(parsed.map((p) => p.choices[0]?.delta.content ?? '').join('')).toBe('Hey')
    expect(parsed.at(-1)?.choices[0]?.finish_reason).toBe('length')
  })

  it('turns an error line into RUNNER_FAILED', async () => {
    const it = fromOllamaChat(bytes(['{"error":"model crashed"}\n']), new ChatCompletionWriter('m'), true, false)
    await expect(it.next()).rejects.toMatchObject({ code: 'RUNNER_FAILED', message: 'Ollama: model crashed' })
  })
})

describe('textLines', () => {
  it('splits lines across chunks and UTF-8 characters across chunk ends; an unended last line is not yielded', async () => {
    const euro = enc.encode('€\n')
    async function * src (): AsyncGenerator<Uint8Array> { yield enc.encode('a\nb'); yield euro.slice(0, 1); yield euro.slice(1); yield enc.encode('tail') }
    expect(await all(textLines(src()))).toEqual(['a', 'b€'])
  })
})

describe('OpenAI -> Ollama requests (the runner adapter)', () => {
  it('maps limits, sampling, stop and JSON mode into options; always streams from Ollama', () => {
    const req = toOllamaChat('llama3.2:latest', {
      model: 'x', messages: [{ role: 'user', content: [{ type: 'text', text: 'hi' }] }], max_tokens: 7, temperature: 0.5, stop: 'END', response_format: { type: 'json_object' }
    })
    expect(req).toEqual({ model: 'llama3.2:latest', messages: [{ role: 'user', content: 'hi' }], stream: true, options: { num_predict: 7, temperature: 0.5, stop: ['END'] }, format: 'json' })
  })
})

describe('Ollama -> OpenAI requests (the Ollama API)', () => {
  it('chat: streams by default with usage, maps options and format', () => {
    expect(ollamaChatToOpenAi({ model: 'm', messages: [{ role: 'user' }], options: { num_predict: 4, top_k: 3 }, format: 'json' })).toEqual({
      model: 'm', messages: [{ role: 'user', content: '' }], stream: true, stream_options: { include_usage: true }, max_tokens: 4, top_k: 3, response_format: { type: 'json_object' }
    })
    expect(ollamaChatToOpenAi({ model: 'm', messages: [], stream: false, options: { num_predict: -1 }, format: { type: 'object' } })).toEqual({
      model: 'm', messages: [], stream: false, response_format: { type: 'json_schema', json_schema: { name: 'output', schema: { type: 'object' } } }
    })
  })

  it('generate: the chat template with the system message, or the raw prompt as a completion', () => {
    expect(ollamaGenerateToOpenAi({ model: 'm', prompt: 'p', system: 's', stream: false })).toEqual({
      path: '/v1/chat/completions', body: { model: 'm', messages: [{ role: 'system', content: 's' }, { role: 'user', content: 'p' }], stream: false }
    })
    expect(ollamaGenerateToOpenAi({ model: 'm', prompt: 'p', raw: true })).toEqual({
      path: '/v1/completions', body: { model: 'm', prompt: 'p', stream: true, stream_options: { include_usage: true } }
    })
  })
})

describe('OpenAI -> Ollama answers (the Ollama API)', () => {
  it('turns an SSE stream into NDJSON pieces and a final object with the usage and timings', async () => {
    const sse = [
      'data: {"choices":[{"delta":{"role":"assistant","content":"He"}}]}\n\n',
      'data: {"choices":[{"delta":{"content":"y"},"finish_reason":"length"}]}\n\ndata: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2},"timings":{"predicted_ms":2}}\n\n',
      'data: [DONE]\n\n'
    ]
    const lines = (await all(toOllamaNdjson(openAiEvents(bytes(sse)), 'chat', 'm', 0n, clock))).map((l) => JSON.parse(l) as Record<string, unknown>)
    expect(lines.slice(0, 2)).toEqual([
      { model: 'm', created_at: '2026-01-01T00:00:00.000Z', message: { role: 'assistant', content: 'He' }, done: false },
      { model: 'm', created_at: '2026-01-01T00:00:00.000Z', message: { role: 'assistant', content: 'y' }, done: false }
    ])
    expect(lines[2]).toMatchObject({ message: { role: 'assistant', content: '' }, done: true, done_reason: 'length', total_duration: 1_000_000, prompt_eval_count: 3, eval_count: 2, eval_duration: 2_000_000 })
  })

  it('an SSE error event throws RUNNER_FAILED', async () => {
    await expect(all(openAiEvents(bytes(['data: {"choices":[]}\n\n', 'error: {"message":"boom"}\n\n'])))).rejects.toMatchObject({ code: 'RUNNER_FAILED', message: 'boom' })
  })

  it('turns a whole response into one object; a load-only request into done_reason load', () => {
    expect(toOllamaObject({ choices: [{ text: 'ok', finish_reason: 'stop' }], usage: { prompt_tokens: 1, completion_tokens: 1 } }, 'generate', 'm', 0n, clock)).toMatchObject({
      model: 'm', response: 'ok', done: true, done_reason: 'stop', eval_count: 1, prompt_eval_count: 1
    })
    expect(ollamaLoaded('chat', 'm', clock)).toEqual({ model: 'm', created_at: '2026-01-01T00:00:00.000Z', message: { role: 'assistant', content: '' }, done_reason: 'load', done: true })
  })

  it('reads error messages and embeddings', () => {
    expect(openAiErrorMessage('{"error":{"message":"no"}}')).toBe('no')
    expect(openAiErrorMessage('{"error":"plain"}')).toBe('plain')
    expect(openAiErrorMessage('not json at all', 3)).toBe('not')
    expect(toOllamaEmbeddings({ data: [{ embedding: [2], index: 1 }, { embedding: [1], index: 0 }], usage: { prompt_tokens: 5 } })).toEqual({ embeddings: [[1], [2]], promptTokens: 5 })
  })
})
