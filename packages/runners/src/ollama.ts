/**
 * Adopts an Ollama server already running on the host, so its models appear in the mesh.
 * llmesh does not start or stop Ollama: one OllamaRunner per model Ollama lists in
 * `/api/tags`, all sharing Ollama's address. Requests in OpenAI's shape are translated to
 * `/api/chat` (NDJSON stream) and the answer back to OpenAI JSON / SSE by the dialect codec
 * (`dialect/ollama.ts`), which the agent's Ollama API uses the other way round.
 *
 * Tested against a fake Ollama that answers like Ollama 0.x does (`/api/tags`, `/api/ps`,
 * `/api/chat` NDJSON), not a real one: none runs here.
 */
import { Pool } from 'undici'
import { LlmeshError, type ModelInfo, type Signal } from '@llmesh/protocol'
import { BaseRunner, type RunnerCommonInit, type UpstreamResponse } from './base-runner.js'
import { DEFAULT_OLLAMA_SLOTS } from './constants.js'
import { RUNNER_CONNECT, requestPaced } from './paced.js'
import { ChatCompletionWriter, includeUsage, openAiErrorBody } from './openai.js'
import { fromOllamaChat, toOllamaChat } from './dialect/ollama.js'
import type { RunnerDescription, RunnerPath } from './runner.js'

/** One model in Ollama's `/api/tags`. */
export interface OllamaTag {
  name: string
  model?: string
  size: number
  /** sha256 of the manifest, hex */
  digest: string
  modified_at?: string
  details?: { format?: string, family?: string, parameter_size?: string, quantization_level?: string }
}

/** One model in Ollama's `/api/ps` (loaded in memory). */
export interface OllamaLoaded {
  name: string
  model?: string
  size: number
  size_vram?: number
  expires_at?: string
  digest?: string
}

async function getJson<T> (pool: Pool, path: string, timeoutMs: number): Promise<T> {
  const res = await pool.request({ path, method: 'GET', headersTimeout: timeoutMs, bodyTimeout: timeoutMs, signal: AbortSignal.timeout(timeoutMs) })
  const text = await res.body.text()
  if (res.statusCode !== 200) throw new LlmeshError('RUNNER_FAILED', `Ollama ${path} answered ${res.statusCode}: ${text.slice(0, 200)}`)
  return JSON.parse(text) as T
}

/**
 * A client of one Ollama server, shared by its model runners: lists models (`/api/tags`) and
 * loaded models (`/api/ps`).
 */
export class OllamaClient {
  readonly url: string
  readonly pool: Pool

  constructor (url: string, connections = 8) {
    this.url = url.replace(/\/+$/, '')
    this.pool = new Pool(this.url, { connections, pipelining: 1, connect: RUNNER_CONNECT })
  }

  async tags (timeoutMs = 5000): Promise<OllamaTag[]> {
    const r = await getJson<{ models?: OllamaTag[] }>(this.pool, '/api/tags', timeoutMs)
    return Array.isArray(r.models) ? r.models : []
  }

  async ps (timeoutMs = 5000): Promise<OllamaLoaded[]> {
    const r = await getJson<{ models?: OllamaLoaded[] }>(this.pool, '/api/ps', timeoutMs)
    return Array.isArray(r.models) ? r.models : []
  }

  async close (): Promise<void> {
    await this.pool.close().catch(() => {})
  }
}

/** A catalog entry for a model Ollama lists (name, size, digest; no path). */
export function ollamaTagToModelInfo (tag: OllamaTag): ModelInfo {
  const info: ModelInfo = { name: tag.name, sizeBytes: Math.max(0, Math.floor(tag.size)), digest: tag.digest, format: 'gguf', source: 'ollama' }
  if (tag.details?.family != null) info.architecture = tag.details.family
  if (tag.details?.quantization_level != null) info.quantization = tag.details.quantization_level
  return info
}

export interface OllamaInit extends RunnerCommonInit {
  client: OllamaClient
  /** the model's name in Ollama, e.g. `llama3.2:latest` */
  ollamaModel: string
  /** name in the mesh. @default ollamaModel */
  modelName?: string
  /** requests sent at once. @default 1 */
  slots?: number
}

/** One Ollama model, served through the Ollama server llmesh adopted. */
export class OllamaRunner extends BaseRunner {
  readonly kind = 'ollama' as const
  readonly model: string
  private readonly init: OllamaInit
  private loaded = false

  constructor (init: OllamaInit) {
    super(init)
    this.init = init
    this.model = init.modelName ?? init.ollamaModel
  }

  override get slots (): number { return this.init.slots ?? DEFAULT_OLLAMA_SLOTS }

  protected async launch (): Promise<void> {
    const why = await this.check(5000)
    if (why != null) throw new LlmeshError('RUNNER_FAILED', why)
  }

  protected async shutdown (): Promise<void> {
    // Ollama is not ours to stop
  }

  protected async check (timeoutMs: number): Promise<string | undefined> {
    const tags = await this.init.client.tags(timeoutMs)
    if (!tags.some((t) => t.name === this.init.ollamaModel)) return `Ollama at ${this.init.client.url} no longer lists ${this.init.ollamaModel}`
    const ps = await this.init.client.ps(timeoutMs).catch(() => undefined)
    if (ps != null) this.loaded = ps.some((m) => m.name === this.init.ollamaModel)
    return undefined
  }

  protected override details (): Partial<RunnerDescription> {
    return { address: this.init.client.url }
  }

  /** Whether Ollama had the model in memory at the last health check (`/api/ps`). */
  get isLoaded (): boolean { return this.loaded }

  protected async open (path: RunnerPath, body: Record<string, unknown>, signal: Signal): Promise<UpstreamResponse> {
    if (path !== '/v1/chat/completions') throw new LlmeshError('INVALID_REQUEST', `Ollama runner does not serve ${path}`)
    const streaming = body['stream'] === true
    // Ollama always streams here (NDJSON), so the answer is read paced like any token stream
    const res = await requestPaced(this.init.client.pool, { path: '/api/chat', body: JSON.stringify(toOllamaChat(this.init.ollamaModel, body)), signal })
    if (res.status !== 200) {
      const parts: Uint8Array[] = []
      for await (const part of res.body) parts.push(part)
      const text = Buffer.concat(parts).toString()
      let message = text.slice(0, 500)
      try { message = String((JSON.parse(text) as { error?: unknown }).error ?? message) } catch {}
      const type = res.status < 500 ? 'invalid_request_error' : 'server_error'
      return { status: res.status, contentType: 'application/json', body: openAiErrorBody(`Ollama: ${message}`, type) }
    }
    const writer = new ChatCompletionWriter(this.model)
    return {
      status: 200,
      contentType: streaming ? 'text/event-stream' : 'application/json',
      body: fromOllamaChat(res.body, writer, streaming, includeUsage(body))
    }
  }
}
