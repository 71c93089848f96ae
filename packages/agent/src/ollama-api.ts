import type { FastifyInstance, FastifyReply } from 'fastify'
import { z } from 'zod'
import { textLines } from '@llmesh/runners'
import { LlmeshError, toLlmeshError } from '@llmesh/protocol'
import { prefixKey } from '@llmesh/scheduler'
import type { Agent } from './agent.js'
import { AGENT_VERSION } from './constants.js'
import { parseBody, readText, routeHeaders, routeRequest, streamTo } from './http.js'
import { meshModels } from './openai-api.js'
import type { RoutedResponse } from './router.js'

/** What Ollama's `/api/version` answers: clients check for a recent Ollama. */
const OLLAMA_COMPAT_VERSION = '0.12.0'
/** Ollama's `expires_at` for a runner that never unloads. */
const NEVER = '2318-01-01T00:00:00Z'

const Options = z.looseObject({
  num_predict: z.number().int().optional(),
  temperature: z.number().optional(),
  top_p: z.number().optional(),
  top_k: z.number().int().optional(),
  min_p: z.number().optional(),
  seed: z.number().int().optional(),
  stop: z.union([z.string(), z.array(z.string())]).optional(),
  repeat_penalty: z.number().optional(),
  presence_penalty: z.number().optional(),
  frequency_penalty: z.number().optional()
}, { error: 'options must be an object' }).optional()

const model = z.string({ error: 'model is required (a string)' }).min(1, 'model must not be empty').max(256)
const format = z.union([z.literal('json'), z.literal(''), z.record(z.string(), z.unknown())]).optional()

const ChatBody = z.looseObject({
  model,
  messages: z.array(z.looseObject({
    role: z.string({ error: 'every message needs a role' }),
    content: z.string({ error: 'every message needs a content string' }).optional()
  }), { error: 'messages must be an array' }).default([]),
  stream: z.boolean({ error: 'stream must be true or false' }).optional(),
  options: Options,
  format,
  tools: z.array(z.unknown()).optional()
})

const GenerateBody = z.looseObject({
  model,
  prompt: z.string({ error: 'prompt must be a string' }).optional(),
  system: z.string().optional(),
  raw: z.boolean().optional(),
  stream: z.boolean({ error: 'stream must be true or false' }).optional(),
  options: Options,
  format
})

const EmbedBody = z.looseObject({
  model,
  input: z.union([z.string(), z.array(z.string()).min(1, 'input must not be empty')], { error: 'input is required (a string or an array of strings)' })
})

const LegacyEmbeddingsBody = z.looseObject({
  model,
  prompt: z.string({ error: 'prompt is required (a string)' })
})

type OllamaOptions = z.infer<typeof Options>

/** Ollama sampling options as OpenAI request fields. */
function openAiSampling (options: OllamaOptions, fmt: z.infer<typeof format>): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  if (options != null) {
    if (options.num_predict != null && options.num_predict > 0) out['max_tokens'] = options.num_predict
    for (const k of ['temperature', 'top_p', 'top_k', 'min_p', 'seed', 'stop', 'repeat_penalty', 'presence_penalty', 'frequency_penalty'] as const) {
      if (options[k] != null) out[k] = options[k]
    }
  }
  if (fmt === 'json') out['response_format'] = { type: 'json_object' }
  else if (fmt != null && typeof fmt === 'object') out['response_format'] = { type: 'json_schema', json_schema: { name: 'output', schema: fmt } }
  return out
}

/** Figures for Ollama's final object, from the OpenAI usage and llama-server's timings. */
interface Totals {
  promptTokens?: number
  completionTokens?: number
  promptMs?: number
  predictedMs?: number
  finish?: string
}

interface OpenAiChunk {
  choices?: Array<{ delta?: { content?: string | null }, message?: { content?: string | null }, text?: string, finish_reason?: string | null }>
  usage?: { prompt_tokens?: number, completion_tokens?: number }
  timings?: { prompt_n?: number, prompt_ms?: number, predicted_n?: number, predicted_ms?: number }
  error?: { message?: string } | string
}

function absorb (totals: Totals, chunk: OpenAiChunk): void {
  const c = chunk.choices?.[0]
  if (c?.finish_reason != null) totals.finish = c.finish_reason
  if (chunk.usage?.prompt_tokens != null) totals.promptTokens = chunk.usage.prompt_tokens
  if (chunk.usage?.completion_tokens != null) totals.completionTokens = chunk.usage.completion_tokens
  const t = chunk.timings
  if (t != null) {
    if (t.prompt_n != null && totals.promptTokens == null) totals.promptTokens = t.prompt_n
    if (t.predicted_n != null && totals.completionTokens == null) totals.completionTokens = t.predicted_n
    if (t.prompt_ms != null) totals.promptMs = t.prompt_ms
    if (t.predicted_ms != null) totals.predictedMs = t.predicted_ms
  }
}

function finalFields (totals: Totals, startedAt: bigint, pieces: number): Record<string, unknown> {
  const ms = (v: number | undefined): number => Math.round((v ?? 0) * 1e6)
  return {
    done: true,
    done_reason: totals.finish === 'length' ? 'length' : 'stop',
    total_duration: Number(process.hrtime.bigint() - startedAt),
    load_duration: 0,
    prompt_eval_count: totals.promptTokens ?? 0,
    prompt_eval_duration: ms(totals.promptMs),
    eval_count: totals.completionTokens ?? pieces,
    eval_duration: ms(totals.predictedMs)
  }
}

/** The text of one OpenAI chunk or response (chat delta, chat message, or completion text). */
function textOf (chunk: OpenAiChunk): string {
  const c = chunk.choices?.[0]
  return c?.delta?.content ?? c?.message?.content ?? c?.text ?? ''
}

/** Parses an SSE stream of OpenAI chunks; an error event throws RUNNER_FAILED. */
async function * sseEvents (body: AsyncIterable<Uint8Array>): AsyncGenerator<OpenAiChunk> {
  for await (const raw of textLines(body)) {
    const line = raw.trimEnd()
    const isError = line.startsWith('error:')
    if (!line.startsWith('data:') && !isError) continue
    const data = line.slice(isError ? 6 : 5).trim()
    if (data === '[DONE]') return
    let json: OpenAiChunk
    try {
      json = JSON.parse(data) as OpenAiChunk
    } catch {
      continue
    }
    if (isError || json.error != null) {
      const e = json.error ?? json
      throw new LlmeshError('RUNNER_FAILED', typeof e === 'string' ? e : (e as { message?: string }).message ?? 'runner error')
    }
    yield json
  }
}

type Shape = 'chat' | 'generate'

/** One piece of Ollama's NDJSON stream. */
function piece (shape: Shape, modelName: string, content: string): Record<string, unknown> {
  const head = { model: modelName, created_at: new Date().toISOString() }
  return shape === 'chat' ? { ...head, message: { role: 'assistant', content }, done: false } : { ...head, response: content, done: false }
}

/**
 * Sends a routed OpenAI response to an Ollama client: an SSE stream becomes Ollama's NDJSON
 * stream (`{model, created_at, message|response, done:false}` ... final `{done:true, done_reason,
 * total_duration, eval_count, prompt_eval_count, ...}`), a JSON body one JSON object. A runner
 * error before the body becomes `{error}` with its status; a break mid-stream a final
 * `{error}` line.
 */
async function sendOllama (reply: FastifyReply, res: RoutedResponse, shape: Shape, modelName: string, startedAt: bigint, writeStallMs: number): Promise<FastifyReply> {
  routeHeaders(reply, res)
  if (res.status >= 400) {
    const text = await readText(res.body)
    let message = text.slice(0, 1000)
    try {
      const j = JSON.parse(text) as OpenAiChunk
      message = typeof j.error === 'string' ? j.error : j.error?.message ?? message
    } catch { /* plain text */ }
    return await reply.status(res.status).send({ error: message })
  }
  if (!res.contentType.includes('text/event-stream')) {
    const json = JSON.parse(await readText(res.body)) as OpenAiChunk
    const totals: Totals = {}
    absorb(totals, json)
    return await reply.status(200).header('content-type', 'application/json; charset=utf-8').send({ ...piece(shape, modelName, textOf(json)), ...finalFields(totals, startedAt, 0) })
  }
  const totals: Totals = {}
  let pieces = 0
  async function * ndjson (): AsyncGenerator<string> {
    for await (const chunk of sseEvents(res.body)) {
      absorb(totals, chunk)
      const text = textOf(chunk)
      if (text === '') continue
      pieces++
      yield JSON.stringify(piece(shape, modelName, text)) + '\n'
    }
    yield JSON.stringify({ ...piece(shape, modelName, ''), ...finalFields(totals, startedAt, pieces) }) + '\n'
  }
  await streamTo(reply.status(200).header('content-type', 'application/x-ndjson').header('cache-control', 'no-cache'), ndjson(), (e) => JSON.stringify({ error: e.message }) + '\n', writeStallMs)
  return reply
}

/** Ollama model details from what the mesh knows about a model. */
function details (agent: Agent, name: string): { size: number, digest: string, details: Record<string, unknown>, modified: number } {
  for (const node of agent.view().nodes) {
    const m = node.models.find((x) => x.name === name)
    if (m == null) continue
    const params = m.parameters
    return {
      size: m.sizeBytes,
      digest: m.sha256 ?? m.digest,
      modified: node.updatedAt,
      details: {
        parent_model: '',
        format: m.format,
        family: m.architecture ?? '',
        families: m.architecture != null ? [m.architecture] : null,
        parameter_size: params != null ? formatParams(params) : '',
        quantization_level: m.quantization ?? ''
      }
    }
  }
  return { size: 0, digest: '', modified: Date.now(), details: { parent_model: '', format: 'gguf', family: '', families: null, parameter_size: '', quantization_level: '' } }
}

function formatParams (n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)}B`
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}K`
  return String(n)
}

/**
 * Ollama's API over the mesh: `/api/chat`, `/api/generate` (translated to the runners' OpenAI
 * API and back), `/api/embed` and `/api/embeddings`, `/api/tags` (models of the mesh), `/api/ps`
 * (runners loaded across the mesh), `/api/version`. Errors are `{error: "..."}`.
 */
export function registerOllamaApi (app: FastifyInstance, agent: Agent): void {
  app.get('/api/version', async () => ({ version: OLLAMA_COMPAT_VERSION, llmesh: AGENT_VERSION }))

  app.get('/api/tags', async () => ({
    models: meshModels(agent).map((m) => {
      const d = details(agent, m.name)
      return { name: m.name, model: m.name, modified_at: new Date(d.modified).toISOString(), size: d.size, digest: d.digest, details: d.details }
    })
  }))

  app.get('/api/ps', async () => {
    const models: Array<Record<string, unknown>> = []
    for (const node of agent.view().nodes) {
      if (!node.connected || node.state === 'dead' || node.state === 'left') continue
      for (const r of node.runners) {
        if (r.kind === 'rpc-server' || (r.state !== 'ready' && r.state !== 'busy')) continue
        const d = details(agent, r.model)
        models.push({ name: r.model, model: r.model, size: d.size, digest: d.digest, details: d.details, expires_at: NEVER, size_vram: 0, llmesh: { node: node.name, peerId: node.peerId, runner: r.id, kind: r.kind, slots: r.slots } })
      }
    }
    return { models }
  })

  app.post('/api/chat', async (req, reply) => {
    const started = process.hrtime.bigint()
    const body = parseBody(ChatBody, req.body)
    if (body.messages.length === 0) {
      // Ollama loads the model and answers at once
      return { model: body.model, created_at: new Date().toISOString(), message: { role: 'assistant', content: '' }, done_reason: 'load', done: true }
    }
    const stream = body.stream ?? true
    const upstream: Record<string, unknown> = {
      model: body.model,
      messages: body.messages.map((m) => ({ role: m.role, content: m.content ?? '' })),
      stream,
      ...(stream ? { stream_options: { include_usage: true } } : {}),
      ...(body.tools != null ? { tools: body.tools } : {}),
      ...openAiSampling(body.options, body.format)
    }
    const res = await routeRequest(agent, req, reply, {
      path: '/v1/chat/completions',
      model: body.model,
      body: upstream,
      prefix: () => prefixKey(body.messages),
      expectedTokens: body.options?.num_predict != null && body.options.num_predict > 0 ? body.options.num_predict : undefined
    })
    return await sendOllama(reply, res, 'chat', body.model, started, agent.config.limits.writeStallMs)
  })

  app.post('/api/generate', async (req, reply) => {
    const started = process.hrtime.bigint()
    const body = parseBody(GenerateBody, req.body)
    if (body.prompt == null || body.prompt === '') {
      return { model: body.model, created_at: new Date().toISOString(), response: '', done_reason: 'load', done: true }
    }
    const stream = body.stream ?? true
    const sampling = openAiSampling(body.options, body.format)
    const streamFields = stream ? { stream: true, stream_options: { include_usage: true } } : { stream: false }
    // raw: the prompt goes to the model as it is; else the model's chat template applies
    const api = body.raw === true
      ? { path: '/v1/completions' as const, body: { model: body.model, prompt: body.prompt, ...streamFields, ...sampling } }
      : {
          path: '/v1/chat/completions' as const,
          body: {
            model: body.model,
            messages: [...(body.system != null && body.system !== '' ? [{ role: 'system', content: body.system }] : []), { role: 'user', content: body.prompt }],
            ...streamFields,
            ...sampling
          }
        }
    const res = await routeRequest(agent, req, reply, {
      ...api,
      model: body.model,
      prefix: () => prefixKey(body.system != null && body.system !== '' ? `${body.system}\n${body.prompt}` : body.prompt),
      expectedTokens: body.options?.num_predict != null && body.options.num_predict > 0 ? body.options.num_predict : undefined
    })
    return await sendOllama(reply, res, 'generate', body.model, started, agent.config.limits.writeStallMs)
  })

  async function embed (req: Parameters<typeof routeRequest>[1], reply: FastifyReply, modelName: string, input: string | string[]): Promise<{ embeddings: number[][], promptTokens: number } | FastifyReply> {
    const res = await routeRequest(agent, req, reply, { path: '/v1/embeddings', model: modelName, body: { model: modelName, input, encoding_format: 'float' }, expectedTokens: 1 })
    routeHeaders(reply, res)
    const text = await readText(res.body)
    let json: { data?: Array<{ embedding?: number[], index?: number }>, usage?: { prompt_tokens?: number }, error?: { message?: string } | string }
    try {
      json = JSON.parse(text) as typeof json
    } catch {
      throw new LlmeshError('RUNNER_FAILED', `runner answered ${res.status} with a body that is not JSON: ${text.slice(0, 200)}`)
    }
    if (res.status >= 400) {
      const message = typeof json.error === 'string' ? json.error : json.error?.message ?? text.slice(0, 500)
      return await reply.status(res.status).send({ error: message })
    }
    const data = [...(json.data ?? [])].sort((a, b) => (a.index ?? 0) - (b.index ?? 0))
    return { embeddings: data.map((d) => d.embedding ?? []), promptTokens: json.usage?.prompt_tokens ?? 0 }
  }

  app.post('/api/embed', async (req, reply) => {
    const started = process.hrtime.bigint()
    const body = parseBody(EmbedBody, req.body)
    const r = await embed(req, reply, body.model, body.input)
    if (!('embeddings' in r)) return r
    return { model: body.model, embeddings: r.embeddings, total_duration: Number(process.hrtime.bigint() - started), load_duration: 0, prompt_eval_count: r.promptTokens }
  })

  app.post('/api/embeddings', async (req, reply) => {
    const body = parseBody(LegacyEmbeddingsBody, req.body)
    const r = await embed(req, reply, body.model, body.prompt)
    if (!('embeddings' in r)) return r
    return { embedding: r.embeddings[0] ?? [] }
  })
}
