import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { z } from 'zod'
import {
  ollamaChatToOpenAi, ollamaEmbedToOpenAi, ollamaGenerateToOpenAi, ollamaLoaded, ollamaMaxTokens, openAiErrorMessage, openAiEvents,
  toOllamaEmbeddings, toOllamaNdjson, toOllamaObject, type OllamaShape, type OpenAiChunk
} from '@llmesh/runners'
import { LlmeshError, runnerServes } from '@llmesh/protocol'
import { prefixKey } from '@llmesh/scheduler'
import { AGENT_VERSION } from '../constants.js'
import type { RoutedResponse } from '../router.js'
import { routeHeaders } from './headers.js'
import { meshModels } from './models.js'
import type { MeshView } from './port.js'
import { parseBody, routeRequest, type ApiContext } from './request.js'
import { readText, streamTo } from './respond.js'

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

/** The last line of an NDJSON stream that broke after it started. */
const ndjsonErrorTrailer = (e: LlmeshError): string => JSON.stringify({ error: e.message }) + '\n'

/**
 * Sends a routed OpenAI response to an Ollama client, translated by the dialect codec: an SSE
 * stream becomes Ollama's NDJSON stream, a JSON body one JSON object. A runner error before the
 * body becomes `{error}` with its status; a break mid-stream a final `{error}` line.
 */
async function sendOllama (reply: FastifyReply, res: RoutedResponse, shape: OllamaShape, modelName: string, startedAt: bigint, writeStallMs: number): Promise<FastifyReply> {
  routeHeaders(reply, res)
  if (res.status >= 400) return await reply.status(res.status).send({ error: openAiErrorMessage(await readText(res.body)) })
  if (!res.contentType.includes('text/event-stream')) {
    const json = JSON.parse(await readText(res.body)) as OpenAiChunk
    return await reply.status(200).header('content-type', 'application/json; charset=utf-8').send(toOllamaObject(json, shape, modelName, startedAt))
  }
  const ndjson = toOllamaNdjson(openAiEvents(res.body), shape, modelName, startedAt)
  await streamTo(reply.status(200).header('content-type', 'application/x-ndjson').header('cache-control', 'no-cache'), ndjson, ndjsonErrorTrailer, writeStallMs)
  return reply
}

/** Ollama model details from what the mesh knows about a model. */
function details (view: MeshView, name: string): { size: number, digest: string, details: Record<string, unknown>, modified: number } {
  for (const node of view.nodes) {
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
export function registerOllamaApi (app: FastifyInstance, ctx: ApiContext): void {
  const { port } = ctx

  app.get('/api/version', async () => ({ version: OLLAMA_COMPAT_VERSION, llmesh: AGENT_VERSION }))

  app.get('/api/tags', async () => {
    const view = port.view()
    return {
      models: meshModels(view).map((m) => {
        const d = details(view, m.name)
        return { name: m.name, model: m.name, modified_at: new Date(d.modified).toISOString(), size: d.size, digest: d.digest, details: d.details }
      })
    }
  })

  app.get('/api/ps', async () => {
    const view = port.view()
    const models: Array<Record<string, unknown>> = []
    for (const node of view.nodes) {
      if (!node.connected || node.state === 'dead' || node.state === 'left') continue
      for (const r of node.runners) {
        if (!runnerServes(r) || (r.state !== 'ready' && r.state !== 'busy')) continue
        const d = details(view, r.model)
        models.push({ name: r.model, model: r.model, size: d.size, digest: d.digest, details: d.details, expires_at: NEVER, size_vram: 0, llmesh: { node: node.name, peerId: node.peerId, runner: r.id, kind: r.kind, slots: r.slots } })
      }
    }
    return { models }
  })

  app.post('/api/chat', async (req, reply) => {
    const started = process.hrtime.bigint()
    const body = parseBody(ChatBody, req.body)
    // Ollama loads the model and answers at once
    if (body.messages.length === 0) return ollamaLoaded('chat', body.model)
    const res = await routeRequest(ctx, req, reply, {
      path: '/v1/chat/completions',
      model: body.model,
      body: ollamaChatToOpenAi(body),
      prefix: () => prefixKey(body.messages),
      expectedTokens: ollamaMaxTokens(body.options)
    })
    return await sendOllama(reply, res, 'chat', body.model, started, ctx.writeStallMs)
  })

  app.post('/api/generate', async (req, reply) => {
    const started = process.hrtime.bigint()
    const body = parseBody(GenerateBody, req.body)
    const prompt = body.prompt
    if (prompt == null || prompt === '') return ollamaLoaded('generate', body.model)
    const res = await routeRequest(ctx, req, reply, {
      ...ollamaGenerateToOpenAi({ ...body, prompt }),
      model: body.model,
      prefix: () => prefixKey(body.system != null && body.system !== '' ? `${body.system}\n${prompt}` : prompt),
      expectedTokens: ollamaMaxTokens(body.options)
    })
    return await sendOllama(reply, res, 'generate', body.model, started, ctx.writeStallMs)
  })

  /** Routes an embeddings request; the vectors, or the reply already sent with the runner's error. */
  async function embed (req: FastifyRequest, reply: FastifyReply, modelName: string, input: string | string[]): Promise<{ embeddings: number[][], promptTokens: number } | FastifyReply> {
    const res = await routeRequest(ctx, req, reply, { path: '/v1/embeddings', model: modelName, body: ollamaEmbedToOpenAi(modelName, input), expectedTokens: 1 })
    routeHeaders(reply, res)
    const text = await readText(res.body)
    let json: Parameters<typeof toOllamaEmbeddings>[0]
    try {
      json = JSON.parse(text) as typeof json
    } catch {
      throw new LlmeshError('RUNNER_FAILED', `runner answered ${res.status} with a body that is not JSON: ${text.slice(0, 200)}`)
    }
    if (res.status >= 400) return await reply.status(res.status).send({ error: openAiErrorMessage(text, 500) })
    return toOllamaEmbeddings(json)
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
