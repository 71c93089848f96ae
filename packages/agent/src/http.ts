import type { OutgoingHttpHeaders } from 'node:http'
import { randomUUID } from 'node:crypto'
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import type { z } from 'zod'
import {
  Abort, HEADER_DEADLINE, HEADER_NODE, HEADER_PRIORITY, HEADER_ROUTE, HEADER_RUNNER, HEADER_STRATEGY, LlmeshError, STREAM_COALESCE_MS, toLlmeshError,
  type InferPath
} from '@llmesh/protocol'
import { parsePriority, parseStrategy } from '@llmesh/scheduler'
import type { Agent } from './agent.js'
import { WRITE_STALL_MS } from './constants.js'
import type { RoutedResponse } from './router.js'
import { QueueFullError } from '@llmesh/protocol'
import { registerOpenAiApi } from './openai-api.js'
import { registerOllamaApi } from './ollama-api.js'
import { drainRequest, registerApiGuards } from './api-guards.js'
import { API_TIMEOUT_CHECK_MS } from './constants.js'

/** Shortest time between two log lines about connections closed at api.maxConnections. @default 10000 ms */
const CAP_LOG_INTERVAL_MS = 10_000

/** A client that read nothing for writeStallMs is disconnected this long after its stream ended. @default 1000 ms */
const CLIENT_CLOSE_GRACE_MS = 1000

/** Longest deadline a client may ask for with x-llmesh-deadline-ms. @default 24 h */
const MAX_DEADLINE_MS = 24 * 3600 * 1000

/** OpenAI error body. */
export function openAiError (err: LlmeshError): { error: { message: string, type: string, code: string, param: null } } {
  return { error: { message: err.message, type: err.type, code: err.code.toLowerCase(), param: null } }
}

/** Maps anything thrown in a handler to an LlmeshError and the HTTP status to answer with. */
export function httpError (err: unknown): { e: LlmeshError, status: number } {
  if (err instanceof LlmeshError) return { e: err, status: err.status }
  const raw = err as { statusCode?: number, message?: string }
  if (typeof raw.statusCode === 'number' && raw.statusCode >= 400 && raw.statusCode < 500) {
    // fastify's own 4xx (bad JSON 400, body too large 413, ...) keep their status
    return { e: new LlmeshError('INVALID_REQUEST', raw.message ?? 'invalid request', { cause: err }), status: raw.statusCode }
  }
  const e = toLlmeshError(err)
  return { e, status: e.status }
}

/** Validates a request body with zod: one clear message naming the field. */
export function parseBody<T> (schema: z.ZodType<T>, body: unknown): T {
  const parsed = schema.safeParse(body)
  if (parsed.success) return parsed.data
  const issue = parsed.error.issues[0]
  const where = issue != null && issue.path.length > 0 ? `${issue.path.join('.')}: ` : ''
  throw new LlmeshError('INVALID_REQUEST', `${where}${issue?.message ?? 'invalid request body'}`)
}

function header (req: FastifyRequest, name: string): string | string[] | undefined {
  return req.headers[name]
}

/** What an API handler hands to `routeRequest`. */
export interface ApiRequest {
  path: InferPath
  model: string
  body: Record<string, unknown>
  /**
   * The request's prefix-affinity key (see scheduler `prefixKey`), computed only when the
   * request is routed by prefix-affinity: hashing a conversation's first messages costs about
   * 25 us per 6 KB, on every request for nothing under the other strategies.
   */
  prefix?: () => string | undefined
  expectedTokens?: number | undefined
}

/**
 * Reads the llmesh request headers (strategy, priority, deadline: 400 when malformed), ties the
 * request to the client's connection and routes it. Resolves once a target's first chunk is in.
 */
export async function routeRequest (agent: Agent, req: FastifyRequest, reply: FastifyReply, api: ApiRequest): Promise<RoutedResponse> {
  const strategy = parseStrategy(header(req, HEADER_STRATEGY), agent.config.strategy)
  const priority = parsePriority(header(req, HEADER_PRIORITY))
  const deadlineMs = parseDeadline(header(req, HEADER_DEADLINE), agent.config.queue.deadlineMs)
  const controller = new Abort()
  const untrack = agent.trackRequest(controller)
  reply.raw.on('close', () => {
    untrack()
    if (!reply.raw.writableFinished) controller.abort(new LlmeshError('INVALID_REQUEST', 'client went away'))
  })
  const prefix = strategy === 'prefix-affinity' ? api.prefix?.() : undefined
  return await agent.infer({
    id: req.id,
    path: api.path,
    model: api.model,
    body: api.body,
    strategy,
    priority,
    ...(prefix != null ? { prefixKey: prefix } : {}),
    ...(api.expectedTokens != null ? { expectedTokens: api.expectedTokens } : {}),
    deadline: Date.now() + deadlineMs,
    signal: controller.signal
  })
}

function parseDeadline (value: string | string[] | undefined, fallback: number): number {
  if (Array.isArray(value)) {
    if (value.length > 1) throw new LlmeshError('INVALID_REQUEST', `${HEADER_DEADLINE} given more than once`)
    value = value[0]
  }
  if (value == null || value.trim() === '') return fallback
  const n = Number(value.trim())
  if (!Number.isInteger(n) || n <= 0 || n > MAX_DEADLINE_MS) {
    throw new LlmeshError('INVALID_REQUEST', `${HEADER_DEADLINE} must be a whole number of ms from 1 to ${MAX_DEADLINE_MS}, got '${value.slice(0, 32)}'`)
  }
  return n
}

/** Sets the route headers every routed response carries. */
export function routeHeaders (reply: FastifyReply, res: RoutedResponse): FastifyReply {
  return reply
    .header(HEADER_NODE, headerValue(res.target.peerId, MAX_ID_HEADER_CHARS))
    .header(HEADER_RUNNER, headerValue(res.target.runnerId, MAX_ID_HEADER_CHARS))
    .header(HEADER_ROUTE, headerValue(res.target.reasons.join('; '), MAX_ROUTE_HEADER_CHARS))
}

/** Longest peer or runner id put in a response header; longer ones are cut. @default 256 chars */
const MAX_ID_HEADER_CHARS = 256
/** Longest x-llmesh-route header. @default 2048 chars */
const MAX_ROUTE_HEADER_CHARS = 2048

/**
 * A string that came (in part) from a peer, made safe as a response header value: printable
 * ASCII stays, every other character (CR, LF and other controls, non-latin1, lone surrogates)
 * is percent-encoded as its UTF-8 bytes, so it can neither split the header nor make Node
 * throw; at most `max` characters of the input are used.
 */
export function headerValue (value: string, max: number): string {
  const s = value.length > max ? value.slice(0, max) : value
  if (/^[\x20-\x24\x26-\x7e]*$/.test(s)) return s
  let out = ''
  for (const ch of s) {
    const c = ch.codePointAt(0)!
    if (c >= 0x20 && c <= 0x7e && c !== 0x25) out += ch
    else for (const b of Buffer.from(ch, 'utf8')) out += `%${b.toString(16).toUpperCase().padStart(2, '0')}`
  }
  return out
}

/**
 * Sends a routed response to the client (OpenAI API). A whole JSON body (a non-streaming call)
 * is read first and sent in one write with its length, so a runner failing midway still gets
 * the client a proper error status; a stream goes out chunk by chunk as the runner produced it,
 * and if it breaks after bytes went out an SSE client gets a final error event instead of a
 * silent hang.
 */
export async function sendRouted (reply: FastifyReply, res: RoutedResponse, writeStallMs?: number): Promise<FastifyReply> {
  void routeHeaders(reply.status(res.status), res).header('content-type', res.contentType)
  if (res.contentType.includes('application/json')) return await reply.send(await readBytes(res.body))
  const sse = res.contentType.includes('text/event-stream')
  await streamTo(reply.header('cache-control', 'no-cache'), res.body, sse ? (e) => `data: ${JSON.stringify(openAiError(e))}\n\n` : undefined, writeStallMs)
  return reply
}

/**
 * Streams a body to the client on the raw response: the reply is hijacked and each chunk is
 * written as it comes, no Readable in between (this runs for every token), waiting for 'drain'
 * when the client reads slowly. A failure after the head went out ends the body with
 * `trailer(err)` when the format has a way to say it (an SSE error event, an NDJSON error
 * line), else cuts the connection so the client sees a truncated body. A client that goes away
 * stops the source, which ends the runner's work. A client that reads nothing for
 * `writeStallMs` is treated alike: its stream ends with a STALLED error (the trailer, written
 * to a socket it may read later) and the connection is closed, which frees the runner's slot.
 */
export async function streamTo (reply: FastifyReply, source: AsyncIterable<Uint8Array | string>, trailer?: (e: LlmeshError) => string, writeStallMs = WRITE_STALL_MS): Promise<void> {
  const raw = reply.raw
  reply.hijack()
  raw.writeHead(reply.statusCode, reply.getHeaders() as OutgoingHttpHeaders)
  const it = source[Symbol.asyncIterator]()
  // chunks that arrive in the same turn of the event loop leave in one socket write (corked
  // until the turn's microtasks are done), and a fast stream's chunks leave at most every
  // STREAM_COALESCE_MS: one write per token would cost more CPU than the token
  let corked = false
  let lastFlushAt = -Infinity
  let timer: NodeJS.Timeout | undefined
  const uncork = (): void => {
    if (!corked) return
    corked = false
    timer = undefined
    lastFlushAt = performance.now()
    raw.uncork()
  }
  try {
    for (;;) {
      const n = await it.next()
      if (n.done === true) break
      if (raw.destroyed) return
      if (!corked) {
        corked = true
        raw.cork()
        const wait = lastFlushAt + STREAM_COALESCE_MS - performance.now()
        if (wait > 0) timer = setTimeout(uncork, wait)
        else process.nextTick(uncork)
      }
      if (!raw.write(n.value) && !await drained(raw, writeStallMs)) {
        throw new LlmeshError('STALLED', `the client read nothing for ${writeStallMs} ms; the stream was ended`)
      }
    }
  } catch (err) {
    const e = toLlmeshError(err, 'RUNNER_FAILED')
    reply.log.warn({ code: e.code, err: e.message }, 'stream failed after it started')
    if (trailer == null) {
      raw.destroy()
      return
    }
    if (!raw.destroyed) raw.write(trailer(e))
    // a client that does not read would keep the socket and what is buffered for it: it goes
    if (e.code === 'STALLED' && raw.writableNeedDrain) {
      raw.end()
      setTimeout(() => { raw.destroy() }, CLIENT_CLOSE_GRACE_MS).unref()
      return
    }
  } finally {
    clearTimeout(timer)
    // what is still corked goes out now: Node 22's response buffers corked chunks itself and
    // end() does not flush them (the last tokens and `data: [DONE]` were lost there)
    if (corked) uncork()
    void Promise.resolve(it.return?.()).catch(() => {})
  }
  raw.end()
}

/**
 * Resolves true when a slow client has read what was written, or went away; false when it read
 * nothing for `stallMs` (a timer only while the client holds the socket full: the rare path).
 * The socket, not the response, is waited on: it is what holds the bytes a client has not read,
 * and Node 22's response keeps its own "needs drain" flag set after a write made while corked
 * and then never emits 'drain' when the socket itself never filled (measured: a client that
 * paused for 1.5 s got 130 KB of a 48 MB stream, on Node 20 all of it).
 */
async function drained (raw: FastifyReply['raw'], stallMs: number): Promise<boolean> {
  const socket = raw.socket
  if (socket == null || !socket.writableNeedDrain) return true
  return await new Promise<boolean>((resolve) => {
    const done = (ok: boolean) => (): void => {
      clearTimeout(timer)
      socket.off('drain', onDrain)
      raw.off('close', onDrain)
      resolve(ok)
    }
    const onDrain = done(true)
    const timer = setTimeout(done(false), stallMs)
    socket.on('drain', onDrain)
    raw.on('close', onDrain)
  })
}

/** Reads a whole routed body into one buffer. */
export async function readBytes (body: AsyncIterable<Uint8Array>, limit = 64 * 1024 * 1024): Promise<Buffer> {
  const parts: Uint8Array[] = []
  let size = 0
  for await (const chunk of body) {
    size += chunk.byteLength
    if (size > limit) throw new LlmeshError('RUNNER_FAILED', `runner response larger than ${limit} bytes`)
    parts.push(chunk)
  }
  return parts.length === 1 && Buffer.isBuffer(parts[0]) ? parts[0] : Buffer.concat(parts, size)
}

/** Reads a whole (small) routed body as text. */
export async function readText (body: AsyncIterable<Uint8Array>, limit = 64 * 1024 * 1024): Promise<string> {
  return (await readBytes(body, limit)).toString('utf8')
}

export function buildHttpServer (agent: Agent): FastifyInstance {
  const api = agent.config.api
  const app = Fastify({
    loggerInstance: agent.log.child({ component: 'http' }) as FastifyBaseLogger,
    logController: new Fastify.LogController({ disableRequestLogging: true }),
    bodyLimit: api.bodyLimit,
    genReqId: () => randomUUID().slice(0, 8),
    // slowloris: the head and the whole request must arrive in time (a response may stream for
    // as long as it takes: these cover receiving the request only); idle keep-alive ends
    requestTimeout: api.requestTimeoutMs,
    keepAliveTimeout: api.keepAliveTimeoutMs,
    http: { headersTimeout: api.headersTimeoutMs, connectionsCheckingInterval: API_TIMEOUT_CHECK_MS }
  })
  // connections beyond the cap are closed as they come, and said so in the log (at most every
  // CAP_LOG_INTERVAL_MS, with how many were closed since the last line)
  app.server.maxConnections = api.maxConnections
  let dropped = 0
  let loggedAt = -Infinity
  app.server.on('drop', () => {
    dropped++
    if (Date.now() - loggedAt < CAP_LOG_INTERVAL_MS) return
    loggedAt = Date.now()
    app.log.warn({ dropped, maxConnections: api.maxConnections }, 'connection cap reached: new connections closed')
    dropped = 0
  })
  registerApiGuards(app, {
    listenHost: api.host,
    port: () => { const a = app.server.address(); return a != null && typeof a !== 'string' ? a.port : undefined },
    allowedHosts: api.allowedHosts,
    keys: agent.apiKeys
  })

  app.setErrorHandler(async (err, req, reply) => {
    const { e, status } = httpError(err)
    // the client gets to read its 413 only if the body it is still sending is read first
    if (status === 413) await drainRequest(req.raw)
    if (status >= 500) req.log.error({ code: e.code, err: e.message }, 'request failed')
    if (e instanceof QueueFullError) void reply.header('retry-after', String(Math.max(1, Math.ceil(e.retryAfterSec))))
    if (e.code === 'UNAUTHORIZED') void reply.header('www-authenticate', 'Bearer realm="llmesh"')
    // Ollama's routes answer errors in Ollama's shape, everything else in OpenAI's
    return await reply.status(status).send(req.url.startsWith('/api/') ? { error: e.message } : openAiError(e))
  })
  app.setNotFoundHandler((req, reply) => {
    const e = new LlmeshError('INVALID_REQUEST', `no route ${req.method} ${req.url.split('?')[0] ?? ''}`)
    void reply.status(404).send(req.url.startsWith('/api/') ? { error: e.message } : openAiError(e))
  })

  app.get('/health', async () => ({ ok: true, peerId: agent.peerId }))
  registerOpenAiApi(app, agent)
  registerOllamaApi(app, agent)

  app.get('/mesh/view', async () => agent.view())
  app.get('/mesh/stats', async () => agent.meshStats())
  app.get('/admin/runners', async () => ({ runners: agent.localRunners(), admission: agent.admission() }))
  app.get('/admin/admission', async () => ({ admission: agent.admission() }))

  return app
}
