/**
 * OpenAI chat-completion shapes for adapters whose engine does not speak OpenAI itself
 * (embedded node-llama-cpp, Ollama's /api/chat): request fields they need, and the JSON / SSE
 * responses they must produce (`chat.completion`, `chat.completion.chunk`, `data: [DONE]`).
 */
import { randomBytes } from 'node:crypto'

export interface ChatMessage {
  role: string
  content: string
}

export type FinishReason = 'stop' | 'length' | 'tool_calls'

export interface Usage {
  prompt_tokens: number
  completion_tokens: number
  total_tokens: number
}

/** Text of an OpenAI message content: a string, or the text parts of an array. */
export function contentText (content: unknown): string {
  if (typeof content === 'string') return content
  if (Array.isArray(content)) {
    return content.map((p) => (p != null && typeof p === 'object' && (p as { type?: unknown }).type === 'text' ? String((p as { text?: unknown }).text ?? '') : '')).join('')
  }
  return ''
}

/** The messages of an OpenAI chat request, content flattened to text. */
export function chatMessages (body: Record<string, unknown>): ChatMessage[] {
  const raw = Array.isArray(body['messages']) ? body['messages'] as unknown[] : []
  return raw.map((m) => {
    const msg = (m ?? {}) as { role?: unknown, content?: unknown }
    return { role: String(msg.role ?? 'user'), content: contentText(msg.content) }
  })
}

/** `max_completion_tokens` (new name) or `max_tokens`; undefined when absent or invalid. */
export function maxTokens (body: Record<string, unknown>): number | undefined {
  const v = body['max_completion_tokens'] ?? body['max_tokens']
  return typeof v === 'number' && Number.isFinite(v) && v > 0 ? Math.floor(v) : undefined
}

export function numberField (body: Record<string, unknown>, key: string): number | undefined {
  const v = body[key]
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined
}

/** `stop` as a list of strings. */
export function stopList (body: Record<string, unknown>): string[] {
  const v = body['stop']
  if (typeof v === 'string') return [v]
  return Array.isArray(v) ? v.filter((s): s is string => typeof s === 'string' && s !== '') : []
}

/** Whether a streaming request asked for a final usage chunk (`stream_options.include_usage`). */
export function includeUsage (body: Record<string, unknown>): boolean {
  const o = body['stream_options']
  return o != null && typeof o === 'object' && (o as { include_usage?: unknown }).include_usage === true
}

const encoder = new TextEncoder()

/** Builds the chunks of one OpenAI chat completion, streamed or whole. */
export class ChatCompletionWriter {
  readonly id = `chatcmpl-${randomBytes(12).toString('hex')}`
  readonly created = Math.floor(Date.now() / 1000)
  private readonly model: string
  private sentRole = false

  constructor (model: string) {
    this.model = model
  }

  private frame (payload: object): Uint8Array {
    return encoder.encode(`data: ${JSON.stringify(payload)}\n\n`)
  }

  private chunk (delta: Record<string, unknown>, finishReason: FinishReason | null, extra: object = {}): Uint8Array {
    return this.frame({
      id: this.id,
      object: 'chat.completion.chunk',
      created: this.created,
      model: this.model,
      choices: [{ index: 0, delta, finish_reason: finishReason }],
      ...extra
    })
  }

  /** One SSE event carrying a piece of the answer (the first one also carries the role). */
  delta (text: string): Uint8Array {
    const delta: Record<string, unknown> = { content: text }
    if (!this.sentRole) {
      delta['role'] = 'assistant'
      this.sentRole = true
    }
    return this.chunk(delta, null)
  }

  /** The closing SSE events: finish reason, optional usage chunk, `data: [DONE]`. */
  finish (reason: FinishReason, usage?: Usage): Uint8Array {
    const parts = [this.chunk(this.sentRole ? {} : { role: 'assistant', content: '' }, reason)]
    if (usage != null) {
      parts.push(this.frame({ id: this.id, object: 'chat.completion.chunk', created: this.created, model: this.model, choices: [], usage }))
    }
    parts.push(encoder.encode('data: [DONE]\n\n'))
    return Buffer.concat(parts)
  }

  /** A whole (non-streaming) `chat.completion` body. */
  completion (text: string, reason: FinishReason, usage: Usage): Uint8Array {
    return encoder.encode(JSON.stringify({
      id: this.id,
      object: 'chat.completion',
      created: this.created,
      model: this.model,
      choices: [{ index: 0, message: { role: 'assistant', content: text }, finish_reason: reason }],
      usage
    }))
  }
}

/** OpenAI error body bytes: `{error:{message,type,code}}`. */
export function openAiErrorBody (message: string, type = 'server_error', code: string | null = null): Uint8Array {
  return encoder.encode(JSON.stringify({ error: { message, type, code, param: null } }))
}

/**
 * A push-to-pull bridge: an engine pushes chunks from callbacks, a reader pulls them with
 * `for await`. A reader that stops early calls `onCancel` (to stop the engine).
 */
export class ChunkQueue implements AsyncIterable<Uint8Array> {
  private readonly items: Uint8Array[] = []
  private waiter?: { resolve: (r: IteratorResult<Uint8Array>) => void, reject: (e: unknown) => void }
  private ended = false
  private error: unknown
  private readonly onCancel: () => void

  constructor (onCancel: () => void) {
    this.onCancel = onCancel
  }

  push (chunk: Uint8Array): void {
    if (this.ended) return
    const w = this.waiter
    if (w != null) {
      this.waiter = undefined
      w.resolve({ value: chunk, done: false })
    } else {
      this.items.push(chunk)
    }
  }

  end (err?: unknown): void {
    if (this.ended) return
    this.ended = true
    this.error = err
    const w = this.waiter
    this.waiter = undefined
    if (w == null) return
    if (err != null) w.reject(err)
    else w.resolve({ value: undefined, done: true })
  }

  [Symbol.asyncIterator] (): AsyncIterator<Uint8Array> {
    return {
      next: async () => {
        const item = this.items.shift()
        if (item != null) return { value: item, done: false }
        if (this.ended) {
          if (this.error != null) throw this.error
          return { value: undefined, done: true }
        }
        return await new Promise((resolve, reject) => { this.waiter = { resolve, reject } })
      },
      return: async () => {
        if (!this.ended) {
          this.ended = true
          this.onCancel()
        }
        const w = this.waiter
        this.waiter = undefined
        w?.resolve({ value: undefined, done: true })
        return { value: undefined, done: true }
      }
    }
  }
}
