import { Readable } from 'node:stream'
import { randomUUID } from 'node:crypto'
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply } from 'fastify'
import { z } from 'zod'
import { HEADER_NODE, HEADER_ROUTE, HEADER_RUNNER, LlmeshError, toLlmeshError } from '@llmesh/protocol'
import type { Agent } from './agent.js'

/** OpenAI chat request: what llmesh itself needs is checked, everything else passes to the runner. */
const ChatCompletionBody = z.looseObject({
  model: z.string({ error: 'model is required (a string)' }).min(1, 'model must not be empty').max(256),
  messages: z.array(z.looseObject({
    role: z.string({ error: 'every message needs a role' }),
    content: z.union([z.string(), z.array(z.unknown()), z.null()]).optional()
  }), { error: 'messages is required (an array)' }).min(1, 'messages must not be empty'),
  stream: z.boolean({ error: 'stream must be true or false' }).optional()
})

/** OpenAI error body. */
function openAiError (err: LlmeshError): { error: { message: string, type: string, code: string, param: null } } {
  return { error: { message: err.message, type: err.type, code: err.code.toLowerCase(), param: null } }
}

/** Maps anything thrown in a handler to an LlmeshError with the right status. */
function httpError (err: unknown): LlmeshError {
  if (err instanceof LlmeshError) return err
  const e = err as { statusCode?: number, message?: string }
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    return new LlmeshError('INVALID_REQUEST', e.message ?? 'invalid request', { cause: err })
  }
  return toLlmeshError(err)
}

export function buildHttpServer (agent: Agent): FastifyInstance {
  const app = Fastify({
    loggerInstance: agent.log.child({ component: 'http' }) as FastifyBaseLogger,
    logController: new Fastify.LogController({ disableRequestLogging: true }),
    bodyLimit: agent.config.api.bodyLimit,
    genReqId: () => randomUUID().slice(0, 8)
  })

  app.setErrorHandler((err, req, reply) => {
    const e = httpError(err)
    // a 4xx body-limit error keeps its own status (413), others use the catalogue's
    const status = e.code === 'INVALID_REQUEST' && typeof (err as { statusCode?: number }).statusCode === 'number'
      ? (err as { statusCode: number }).statusCode
      : e.status
    if (status >= 500) req.log.error({ code: e.code, err: e.message }, 'request failed')
    void reply.status(status).send(openAiError(e))
  })
  app.setNotFoundHandler((req, reply) => {
    void reply.status(404).send(openAiError(new LlmeshError('INVALID_REQUEST', `no route ${req.method} ${req.url}`)))
  })

  app.get('/health', async () => ({ ok: true, peerId: agent.peerId }))

  app.get('/v1/models', async () => {
    const seen = new Map<string, { id: string, object: 'model', created: number, owned_by: string }>()
    for (const node of agent.view().nodes) {
      if (!node.connected) continue
      for (const name of [...node.models.map((m) => m.name), ...node.runners.map((r) => r.model)]) {
        if (!seen.has(name)) seen.set(name, { id: name, object: 'model', created: Math.floor(node.startedAt / 1000), owned_by: 'llmesh' })
      }
    }
    return { object: 'list', data: [...seen.values()].sort((a, b) => a.id.localeCompare(b.id)) }
  })

  app.post('/v1/chat/completions', async (req, reply) => {
    const parsed = ChatCompletionBody.safeParse(req.body)
    if (!parsed.success) {
      const issue = parsed.error.issues[0]
      const where = issue != null && issue.path.length > 0 ? `${issue.path.join('.')}: ` : ''
      throw new LlmeshError('INVALID_REQUEST', `${where}${issue?.message ?? 'invalid request body'}`)
    }
    const controller = new AbortController()
    reply.raw.on('close', () => { if (!reply.raw.writableFinished) controller.abort(new Error('client went away')) })
    const res = await agent.infer(req.id, '/v1/chat/completions', parsed.data, controller.signal)
    return await sendRouted(reply, res)
  })

  app.get('/mesh/view', async () => agent.view())
  app.get('/mesh/stats', async () => agent.meshStats())
  app.get('/admin/runners', async () => ({ runners: agent.localRunners() }))

  return app
}

/**
 * Streams a routed response to the client with the route headers. If the stream breaks after
 * bytes went out, an SSE client gets a final error event instead of a silent hang.
 */
async function sendRouted (reply: FastifyReply, res: Awaited<ReturnType<Agent['infer']>>): Promise<FastifyReply> {
  const sse = res.contentType.includes('text/event-stream')
  const source = res.body
  async function * guarded (): AsyncGenerator<Uint8Array | string> {
    try {
      for await (const chunk of source) yield chunk
    } catch (err) {
      if (!sse) throw err
      const e = toLlmeshError(err, 'RUNNER_FAILED')
      yield `data: ${JSON.stringify(openAiError(e))}\n\n`
    }
  }
  void reply
    .status(res.status)
    .header('content-type', res.contentType)
    .header('cache-control', 'no-cache')
    .header(HEADER_NODE, res.target.peerId)
    .header(HEADER_RUNNER, res.target.runnerId)
    .header(HEADER_ROUTE, res.target.reasons.join('; '))
  return await reply.send(Readable.from(guarded()))
}
