import { randomUUID } from 'node:crypto'
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import { LlmeshError, type Clock } from '@llmesh/protocol'
import { systemClock } from '@llmesh/kit'
import type { Strategy } from '@llmesh/scheduler'
import { API_TIMEOUT_CHECK_MS } from '../constants.js'
import { errorBody, httpError } from './errors.js'
import { drainRequest, registerApiGuards } from './guards.js'
import { registerMeshApi } from './mesh.js'
import { registerMetricsApi } from './metrics.js'
import { registerOllamaApi } from './ollama.js'
import { registerOpenAiApi } from './openai.js'
import type { AgentPort } from './port.js'
import type { ApiContext } from './request.js'
import { registerUi } from './ui.js'

/** Shortest time between two log lines about connections closed at maxConnections. @default 10000 ms */
const CAP_LOG_INTERVAL_MS = 10_000

/** The HTTP API's settings (the agent's `api` config, and the request defaults). */
export interface HttpApiInit {
  /** listen address: loopback turns the Host/Origin check on, off loopback a key is required */
  host: string
  /** further Host names a loopback API answers (a local reverse proxy's) */
  allowedHosts: readonly string[]
  /** largest request body, bytes */
  bodyLimit: number
  /** the whole request must arrive within this, ms */
  requestTimeoutMs: number
  /** the request head must arrive within this, ms */
  headersTimeoutMs: number
  /** an idle keep-alive connection is closed after this, ms */
  keepAliveTimeoutMs: number
  /** connections beyond this are closed as they come */
  maxConnections: number
  /** routing strategy of a request without `x-llmesh-strategy` */
  strategy: Strategy
  /** longest wait for a slot of a request without `x-llmesh-deadline-ms`, ms */
  deadlineMs: number
  /** a client that reads nothing this long has its stream ended, ms */
  writeStallMs: number
  /** the agent's clock: request deadlines are set on it. @default the system clock */
  clock?: Pick<Clock, 'now'>
  /** start models that do not fit a host's model memory when the request does not say. @default false */
  loadAnyway?: boolean
}

/**
 * The agent's HTTP API on fastify: the guards (Host/Origin, API key, body size, JSON depth),
 * errors in each dialect's shape, and the OpenAI, Ollama and llmesh routes, all over `port`.
 * Not listening yet: the caller listens and closes.
 */
export function buildHttpServer (init: HttpApiInit, port: AgentPort, logger: Logger): FastifyInstance {
  const app = Fastify({
    loggerInstance: logger.child({ component: 'http' }) as FastifyBaseLogger,
    logController: new Fastify.LogController({ disableRequestLogging: true }),
    bodyLimit: init.bodyLimit,
    genReqId: () => randomUUID().slice(0, 8),
    // slowloris: the head and the whole request must arrive in time (a response may stream for
    // as long as it takes: these cover receiving the request only); idle keep-alive ends
    requestTimeout: init.requestTimeoutMs,
    keepAliveTimeout: init.keepAliveTimeoutMs,
    http: { headersTimeout: init.headersTimeoutMs, connectionsCheckingInterval: API_TIMEOUT_CHECK_MS }
  })
  // connections beyond the cap are closed as they come, and said so in the log (at most every
  // CAP_LOG_INTERVAL_MS, with how many were closed since the last line)
  app.server.maxConnections = init.maxConnections
  let dropped = 0
  let loggedAt = -Infinity
  app.server.on('drop', () => {
    dropped++
    if (Date.now() - loggedAt < CAP_LOG_INTERVAL_MS) return
    loggedAt = Date.now()
    app.log.warn({ dropped, maxConnections: init.maxConnections }, 'connection cap reached: new connections closed')
    dropped = 0
  })
  registerApiGuards(app, {
    listenHost: init.host,
    port: () => { const a = app.server.address(); return a != null && typeof a !== 'string' ? a.port : undefined },
    allowedHosts: init.allowedHosts,
    keys: port.apiKeys
  })

  app.setErrorHandler(async (err, req, reply) => {
    const { e, status } = httpError(err)
    // the client gets to read its 413 only if the body it is still sending is read first
    if (status === 413) await drainRequest(req.raw)
    if (status >= 500) req.log.error({ code: e.code, err: e.message }, 'request failed')
    // a full queue (QueueFullError) says when to come back
    const retryAfterSec = (e as { retryAfterSec?: unknown }).retryAfterSec
    if (e.code === 'QUEUE_FULL' && typeof retryAfterSec === 'number') void reply.header('retry-after', String(Math.max(1, Math.ceil(retryAfterSec))))
    if (e.code === 'UNAUTHORIZED') void reply.header('www-authenticate', 'Bearer realm="llmesh"')
    return await reply.status(status).send(errorBody(req.url, e))
  })
  app.setNotFoundHandler((req, reply) => {
    const e = new LlmeshError('INVALID_REQUEST', `no route ${req.method} ${req.url.split('?')[0] ?? ''}`)
    void reply.status(404).send(errorBody(req.url, e))
  })

  const ctx: ApiContext = { port, strategy: init.strategy, deadlineMs: init.deadlineMs, writeStallMs: init.writeStallMs, clock: init.clock ?? systemClock, loadAnyway: init.loadAnyway ?? false }
  registerMeshApi(app, port)
  registerMetricsApi(app, port)
  registerOpenAiApi(app, ctx)
  registerOllamaApi(app, ctx)
  registerUi(app, port)
  return app
}
