/**
 * OpenAI <-> Ollama: the one translation between the two dialects, both ways, as functions over
 * plain values and byte streams (no I/O; the time stamps Ollama's answers carry come from a
 * clock the caller may pass).
 *
 * - The Ollama runner adapter speaks OpenAI to the mesh and Ollama to the server it adopted:
 *   `toOllamaChat` (request), `fromOllamaChat` (NDJSON stream -> OpenAI SSE or JSON).
 * - The agent's Ollama API speaks Ollama to its clients and OpenAI to the mesh:
 *   `ollamaChatToOpenAi` / `ollamaGenerateToOpenAi` / `ollamaEmbedToOpenAi` (requests),
 *   `openAiEvents` + `toOllamaNdjson` (SSE stream -> NDJSON stream), `toOllamaObject` (a whole
 *   answer), `toOllamaEmbeddings`, `openAiErrorMessage`.
 */
import { LlmeshError } from '@llmesh/protocol'
import { chatMessages, maxTokens, numberField, stopList, type ChatCompletionWriter, type FinishReason, type Usage } from '../openai.js'

/**
 * The lines of a streamed text body (SSE, NDJSON), without their line ends, decoded as UTF-8
 * across chunk boundaries. A last line without a line end is not yielded: both formats end
 * every event with one.
 */
export async function * textLines (source: AsyncIterable<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder()
  let buf = ''
  for await (const bytes of source) {
    buf += decoder.decode(bytes, { stream: true })
    let nl: number
    while ((nl = buf.indexOf('\n')) >= 0) {
      yield buf.slice(0, nl)
      buf = buf.slice(nl + 1)
    }
  }
}

// ---- OpenAI -> Ollama requests, Ollama -> OpenAI answers (the runner adapter) ----

/** OpenAI chat request -> Ollama `/api/chat` request (always streamed from Ollama). */
export function toOllamaChat (ollamaModel: string, body: Record<string, unknown>): Record<string, unknown> {
  const options: Record<string, unknown> = {}
  const limit = maxTokens(body)
  if (limit != null) options['num_predict'] = limit
  for (const [from, to] of [['temperature', 'temperature'], ['top_p', 'top_p'], ['seed', 'seed'], ['frequency_penalty', 'frequency_penalty'], ['presence_penalty', 'presence_penalty']] as const) {
    const v = numberField(body, from)
    if (v != null) options[to] = v
  }
  const stop = stopList(body)
  if (stop.length > 0) options['stop'] = stop
  const req: Record<string, unknown> = { model: ollamaModel, messages: chatMessages(body), stream: true, options }
  const format = body['response_format'] as { type?: unknown } | undefined
  if (format?.type === 'json_object') req['format'] = 'json'
  return req
}

/** One line of Ollama's `/api/chat` NDJSON stream. */
interface OllamaChatLine {
  message?: { role?: string, content?: string }
  done?: boolean
  done_reason?: string
  prompt_eval_count?: number
  eval_count?: number
  error?: string
}

/** Ollama NDJSON chat stream -> OpenAI SSE chunks (streaming) or one `chat.completion`. */
export async function * fromOllamaChat (source: AsyncIterable<Uint8Array>, writer: ChatCompletionWriter, streaming: boolean, wantUsage: boolean): AsyncGenerator<Uint8Array> {
  let text = ''
  for await (const raw of textLines(source)) {
    const line = raw.trim()
    if (line === '') continue
    const msg = JSON.parse(line) as OllamaChatLine
    if (msg.error != null) throw new LlmeshError('RUNNER_FAILED', `Ollama: ${msg.error}`)
    const piece = msg.message?.content ?? ''
    if (piece !== '') {
      text += piece
      if (streaming) yield writer.delta(piece)
    }
    if (msg.done === true) {
      const prompt = msg.prompt_eval_count ?? 0
      const completion = msg.eval_count ?? 0
      const usage: Usage = { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion }
      const reason: FinishReason = msg.done_reason === 'length' ? 'length' : 'stop'
      yield streaming ? writer.finish(reason, wantUsage ? usage : undefined) : writer.completion(text, reason, usage)
      return
    }
  }
  throw new LlmeshError('RUNNER_FAILED', 'Ollama ended the response before it was done')
}

// ---- Ollama -> OpenAI requests, OpenAI -> Ollama answers (the agent's Ollama API) ----

/** Ollama's sampling `options` (what is translated; the rest is dropped). */
export interface OllamaOptions {
  num_predict?: number | undefined
  temperature?: number | undefined
  top_p?: number | undefined
  top_k?: number | undefined
  min_p?: number | undefined
  seed?: number | undefined
  stop?: string | string[] | undefined
  repeat_penalty?: number | undefined
  presence_penalty?: number | undefined
  frequency_penalty?: number | undefined
}

/** Ollama's `format`: 'json', '' (none) or a JSON schema. */
export type OllamaFormat = 'json' | '' | Record<string, unknown> | undefined

/** Ollama `/api/chat` request, as far as it is translated. */
export interface OllamaChatRequest {
  model: string
  messages: Array<{ role: string, content?: string | undefined }>
  stream?: boolean | undefined
  options?: OllamaOptions | undefined
  format?: OllamaFormat
  tools?: unknown[] | undefined
}

/** Ollama `/api/generate` request, as far as it is translated. */
export interface OllamaGenerateRequest {
  model: string
  prompt: string
  system?: string | undefined
  raw?: boolean | undefined
  stream?: boolean | undefined
  options?: OllamaOptions | undefined
  format?: OllamaFormat
}

const SAMPLING_FIELDS = ['temperature', 'top_p', 'top_k', 'min_p', 'seed', 'stop', 'repeat_penalty', 'presence_penalty', 'frequency_penalty'] as const

/** Ollama sampling options and format as OpenAI request fields. */
export function ollamaSampling (options: OllamaOptions | undefined, fmt: OllamaFormat): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  if (options != null) {
    if (options.num_predict != null && options.num_predict > 0) out['max_tokens'] = options.num_predict
    for (const k of SAMPLING_FIELDS) {
      if (options[k] != null) out[k] = options[k]
    }
  }
  if (fmt === 'json') out['response_format'] = { type: 'json_object' }
  else if (fmt != null && typeof fmt === 'object') out['response_format'] = { type: 'json_schema', json_schema: { name: 'output', schema: fmt } }
  return out
}

/** Output tokens an Ollama request asks for (`options.num_predict` when positive). */
export function ollamaMaxTokens (options: OllamaOptions | undefined): number | undefined {
  return options?.num_predict != null && options.num_predict > 0 ? options.num_predict : undefined
}

/** Ollama `/api/chat` request -> OpenAI `/v1/chat/completions` body (Ollama streams unless told not to). */
export function ollamaChatToOpenAi (body: OllamaChatRequest): Record<string, unknown> {
  const stream = body.stream ?? true
  return {
    model: body.model,
    messages: body.messages.map((m) => ({ role: m.role, content: m.content ?? '' })),
    stream,
    ...(stream ? { stream_options: { include_usage: true } } : {}),
    ...(body.tools != null ? { tools: body.tools } : {}),
    ...ollamaSampling(body.options, body.format)
  }
}

/**
 * Ollama `/api/generate` request -> an OpenAI request: `raw` sends the prompt to the model as it
 * is (`/v1/completions`), else the model's chat template applies (`/v1/chat/completions`, the
 * `system` text as a system message).
 */
export function ollamaGenerateToOpenAi (body: OllamaGenerateRequest): { path: '/v1/completions' | '/v1/chat/completions', body: Record<string, unknown> } {
  const stream = body.stream ?? true
  const sampling = ollamaSampling(body.options, body.format)
  const streamFields = stream ? { stream: true, stream_options: { include_usage: true } } : { stream: false }
  if (body.raw === true) return { path: '/v1/completions', body: { model: body.model, prompt: body.prompt, ...streamFields, ...sampling } }
  return {
    path: '/v1/chat/completions',
    body: {
      model: body.model,
      messages: [...(body.system != null && body.system !== '' ? [{ role: 'system', content: body.system }] : []), { role: 'user', content: body.prompt }],
      ...streamFields,
      ...sampling
    }
  }
}

/** Ollama `/api/embed` or `/api/embeddings` input -> OpenAI `/v1/embeddings` body. */
export function ollamaEmbedToOpenAi (model: string, input: string | string[]): Record<string, unknown> {
  return { model, input, encoding_format: 'float' }
}

/** One OpenAI chunk or whole response, as far as Ollama's answer needs it. */
export interface OpenAiChunk {
  choices?: Array<{ delta?: { content?: string | null }, message?: { content?: string | null }, text?: string, finish_reason?: string | null }>
  usage?: { prompt_tokens?: number, completion_tokens?: number }
  timings?: { prompt_n?: number, prompt_ms?: number, predicted_n?: number, predicted_ms?: number }
  error?: { message?: string } | string
}

/** Parses an SSE stream of OpenAI chunks; an error event throws RUNNER_FAILED. */
export async function * openAiEvents (body: AsyncIterable<Uint8Array>): AsyncGenerator<OpenAiChunk> {
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

/** The message of an OpenAI error body (`{error:{message}}` or `{error}`), else the text's start. */
export function openAiErrorMessage (text: string, max = 1000): string {
  const fallback = text.slice(0, max)
  try {
    const j = JSON.parse(text) as OpenAiChunk
    return typeof j.error === 'string' ? j.error : j.error?.message ?? fallback
  } catch {
    return fallback
  }
}

/** Which Ollama answer: `/api/chat` (`message`) or `/api/generate` (`response`). */
export type OllamaShape = 'chat' | 'generate'

/** The clock Ollama's answers are stamped with: `created_at` and the durations. */
export interface DialectClock {
  /** wall time, ISO 8601 */
  iso: () => string
  /** a monotonic time, ns */
  ns: () => bigint
}

export const SYSTEM_CLOCK: DialectClock = { iso: () => new Date().toISOString(), ns: () => process.hrtime.bigint() }

/** Figures for Ollama's final object, from the OpenAI usage and llama-server's timings. */
interface Totals {
  promptTokens?: number
  completionTokens?: number
  promptMs?: number
  predictedMs?: number
  finish?: string
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

function finalFields (totals: Totals, totalNs: number, pieces: number): Record<string, unknown> {
  const ms = (v: number | undefined): number => Math.round((v ?? 0) * 1e6)
  return {
    done: true,
    done_reason: totals.finish === 'length' ? 'length' : 'stop',
    total_duration: totalNs,
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

/** One piece of Ollama's answer. */
function piece (shape: OllamaShape, model: string, content: string, createdAt: string): Record<string, unknown> {
  const head = { model, created_at: createdAt }
  return shape === 'chat' ? { ...head, message: { role: 'assistant', content }, done: false } : { ...head, response: content, done: false }
}

/** Ollama's answer to a request that only loads the model (no messages, or no prompt). */
export function ollamaLoaded (shape: OllamaShape, model: string, clock: DialectClock = SYSTEM_CLOCK): Record<string, unknown> {
  const head = { model, created_at: clock.iso() }
  return shape === 'chat' ? { ...head, message: { role: 'assistant', content: '' }, done_reason: 'load', done: true } : { ...head, response: '', done_reason: 'load', done: true }
}

/** A whole OpenAI response -> Ollama's one JSON object (the text and the final figures). */
export function toOllamaObject (json: OpenAiChunk, shape: OllamaShape, model: string, startedAt: bigint, clock: DialectClock = SYSTEM_CLOCK): Record<string, unknown> {
  const totals: Totals = {}
  absorb(totals, json)
  return { ...piece(shape, model, textOf(json), clock.iso()), ...finalFields(totals, Number(clock.ns() - startedAt), 0) }
}

/**
 * OpenAI chunks -> Ollama's NDJSON stream: `{model, created_at, message|response, done:false}`
 * per piece of text, then `{done:true, done_reason, total_duration, eval_count,
 * prompt_eval_count, ...}`.
 */
export async function * toOllamaNdjson (events: AsyncIterable<OpenAiChunk>, shape: OllamaShape, model: string, startedAt: bigint, clock: DialectClock = SYSTEM_CLOCK): AsyncGenerator<string> {
  const totals: Totals = {}
  let pieces = 0
  for await (const chunk of events) {
    absorb(totals, chunk)
    const text = textOf(chunk)
    if (text === '') continue
    pieces++
    yield JSON.stringify(piece(shape, model, text, clock.iso())) + '\n'
  }
  yield JSON.stringify({ ...piece(shape, model, '', clock.iso()), ...finalFields(totals, Number(clock.ns() - startedAt), pieces) }) + '\n'
}

/** An OpenAI embeddings response -> the vectors in input order and the prompt's tokens. */
export function toOllamaEmbeddings (json: { data?: Array<{ embedding?: number[], index?: number }>, usage?: { prompt_tokens?: number } }): { embeddings: number[][], promptTokens: number } {
  const data = [...(json.data ?? [])].sort((a, b) => (a.index ?? 0) - (b.index ?? 0))
  return { embeddings: data.map((d) => d.embedding ?? []), promptTokens: json.usage?.prompt_tokens ?? 0 }
}
