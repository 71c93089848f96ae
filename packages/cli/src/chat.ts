import { createInterface } from 'node:readline'
import type { Readable } from 'node:stream'
import { apiCall, apiErrorMessage, fetchView, send, type ApiTarget } from './api-client.js'
import { CHAT_STREAM_TIMEOUT_MS } from './constants.js'

/** One message of the conversation, as the OpenAI API takes it. */
export interface ChatMessage {
  role: 'user' | 'assistant'
  content: string
}

/** One exchange: what was asked, what came back and which host of the mesh answered. */
export interface ChatTurn {
  model: string
  prompt: string
  reply: string
  /** the serving host's name (its peer id's tail when the view does not know it); null: not said */
  host: string | null
  peerId: string | null
}

/**
 * The model to talk to: `wanted` when the mesh serves it, else the only (or first) model of
 * `/v1/models`. A model the mesh does not have is a failure naming the ones it has.
 */
export async function chooseModel (target: ApiTarget, wanted: string | undefined): Promise<string> {
  const list = await apiCall(target, 'GET', '/v1/models') as { data?: Array<{ id: string }> }
  const names = (list.data ?? []).map((m) => m.id)
  if (wanted != null) {
    if (names.includes(wanted)) return wanted
    throw new Error(`unknown model '${wanted}': the mesh has ${names.length > 0 ? names.join(', ') : 'no models'}`)
  }
  if (names.length === 0) throw new Error('the mesh has no models (start an agent with --model or --model-dir)')
  return names[0]!
}

/**
 * Sends the conversation and streams the answer: `onText` gets each piece as it arrives.
 * Answers the whole reply and the serving peer's id (the `x-llmesh-node` header).
 */
export async function streamReply (target: ApiTarget, model: string, messages: ChatMessage[], onText: (text: string) => void, opts: { maxTokens?: number, signal?: AbortSignal } = {}): Promise<{ reply: string, peerId: string | null }> {
  const body = { model, stream: true, messages, ...(opts.maxTokens != null ? { max_tokens: opts.maxTokens } : {}) }
  const res = await send(target, 'POST', '/v1/chat/completions', body, { timeoutMs: CHAT_STREAM_TIMEOUT_MS, ...(opts.signal != null ? { signal: opts.signal } : {}) })
  if (res.statusCode !== 200) throw new Error(apiErrorMessage(target, res.statusCode, await res.body.text()))
  const node = res.headers['x-llmesh-node']
  let reply = ''
  for await (const data of sseData(res.body)) {
    if (data === '[DONE]') break
    let chunk: { choices?: Array<{ delta?: { content?: unknown } }>, error?: { message?: unknown } | string }
    try {
      chunk = JSON.parse(data) as typeof chunk
    } catch {
      throw new Error('the agent sent a stream event that is not JSON')
    }
    if (chunk.error != null) throw new Error(typeof chunk.error === 'string' ? chunk.error : String(chunk.error.message ?? 'the answer failed'))
    const text = chunk.choices?.[0]?.delta?.content
    if (typeof text === 'string' && text !== '') {
      reply += text
      onText(text)
    }
  }
  return { reply, peerId: typeof node === 'string' ? node : null }
}

/** The `data:` payloads of a server-sent event stream, one per event. */
async function * sseData (body: AsyncIterable<Buffer | string>): AsyncGenerator<string> {
  const decoder = new TextDecoder()
  let buffered = ''
  let data: string[] = []
  for await (const part of body) {
    buffered += typeof part === 'string' ? part : decoder.decode(part, { stream: true })
    let nl
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl).replace(/\r$/, '')
      buffered = buffered.slice(nl + 1)
      if (line === '') {
        if (data.length > 0) yield data.join('\n')
        data = []
      } else if (line.startsWith('data:')) {
        data.push(line.slice(5).replace(/^ /, ''))
      }
    }
  }
  if (data.length > 0) yield data.join('\n')
}

/** What a chat session prints; the command decides how (streamed text, or JSON per turn). */
export interface ChatSink {
  /** a piece of the answer, as it streams */
  text: (text: string) => void
  /** a turn is complete */
  turn: (turn: ChatTurn) => void
  /** a turn failed (the conversation goes on without it) */
  failed: (message: string) => void
  /** ready for the next line (interactive on a terminal: the prompt) */
  ready: () => void
}

export interface ChatSession {
  target: ApiTarget
  model: string
  maxTokens?: number
  /** ends the session: the answer streaming now is cut off and no further line is read */
  signal: AbortSignal
}

/**
 * A conversation: each line of `input` (empty lines skipped) is a user message sent with the
 * conversation so far; each answer streams to `sink` and joins the conversation. Ends at the end
 * of `input` or when `signal` aborts. Answers the turns that failed.
 */
export async function chatSession (session: ChatSession, input: Readable, sink: ChatSink): Promise<{ turns: number, failures: number }> {
  const view = await fetchView(session.target).catch(() => undefined)
  const nameOf = (peerId: string | null): string | null => peerId == null ? null : view?.nodes.find((n) => n.peerId === peerId)?.name ?? `…${peerId.slice(-10)}`
  const messages: ChatMessage[] = []
  const lines = createInterface({ input, terminal: false, crlfDelay: Infinity })
  const stop = (): void => { lines.close() }
  session.signal.addEventListener('abort', stop, { once: true })
  let turns = 0
  let failures = 0
  try {
    sink.ready()
    for await (const line of lines) {
      if (session.signal.aborted) break
      const prompt = line.trim()
      if (prompt === '') { sink.ready(); continue }
      messages.push({ role: 'user', content: prompt })
      try {
        const { reply, peerId } = await streamReply(session.target, session.model, messages, sink.text, { signal: session.signal, ...(session.maxTokens != null ? { maxTokens: session.maxTokens } : {}) })
        messages.push({ role: 'assistant', content: reply })
        turns++
        sink.turn({ model: session.model, prompt, reply, host: nameOf(peerId), peerId })
      } catch (err) {
        messages.pop()
        if (session.signal.aborted) break
        failures++
        sink.failed((err as Error).message)
      }
      sink.ready()
    }
  } finally {
    session.signal.removeEventListener('abort', stop)
    lines.close()
  }
  return { turns, failures }
}
