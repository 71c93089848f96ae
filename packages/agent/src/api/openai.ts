import type { FastifyInstance } from 'fastify'
import { z } from 'zod'
import { prefixKey } from '@llmesh/scheduler'
import { meshModels } from './models.js'
import { parseBody, routeRequest, type ApiContext } from './request.js'
import { sendRouted } from './respond.js'

const model = z.string({ error: 'model is required (a string)' }).min(1, 'model must not be empty').max(256)
const stream = z.boolean({ error: 'stream must be true or false' }).optional()
const maxTokens = z.number({ error: 'max_tokens must be a number' }).int().positive().optional()

/** OpenAI chat request: what llmesh itself needs is checked, everything else passes to the runner. */
export const ChatCompletionBody = z.looseObject({
  model,
  messages: z.array(z.looseObject({
    role: z.string({ error: 'every message needs a role' }),
    content: z.union([z.string(), z.array(z.unknown()), z.null()]).optional()
  }), { error: 'messages is required (an array)' }).min(1, 'messages must not be empty'),
  stream,
  max_tokens: maxTokens.nullable(),
  max_completion_tokens: maxTokens.nullable()
})

/** OpenAI legacy completion request. */
export const CompletionBody = z.looseObject({
  model,
  prompt: z.union([z.string(), z.array(z.string()).min(1), z.array(z.number()).min(1), z.array(z.array(z.number())).min(1)], {
    error: 'prompt is required (a string, an array of strings, or tokens)'
  }),
  stream,
  max_tokens: maxTokens.nullable()
})

/** OpenAI embeddings request. */
export const EmbeddingBody = z.looseObject({
  model,
  input: z.union([z.string(), z.array(z.string()).min(1), z.array(z.number()).min(1), z.array(z.array(z.number())).min(1)], {
    error: 'input is required (a string, an array of strings, or tokens)'
  })
})

/** `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`, `/v1/models`: OpenAI's API over the mesh. */
export function registerOpenAiApi (app: FastifyInstance, ctx: ApiContext): void {
  const { port } = ctx

  app.get('/v1/models', async () => ({
    object: 'list',
    data: meshModels(port.view()).map((m) => ({ id: m.name, object: 'model', created: Math.floor(m.created / 1000), owned_by: 'llmesh' }))
  }))

  app.get<{ Params: { id: string } }>('/v1/models/:id', async (req, reply) => {
    const models = meshModels(port.view())
    const m = models.find((x) => x.name === req.params.id)
    if (m == null) {
      return await reply.status(404).send({ error: { message: `model '${req.params.id}' is not served in the mesh; models: ${models.map((x) => x.name).join(', ') || 'none'}`, type: 'invalid_request_error', code: 'model_not_found', param: null } })
    }
    return { id: m.name, object: 'model', created: Math.floor(m.created / 1000), owned_by: 'llmesh' }
  })

  app.post('/v1/chat/completions', async (req, reply) => {
    const body = parseBody(ChatCompletionBody, req.body)
    const res = await routeRequest(ctx, req, reply, {
      path: '/v1/chat/completions',
      model: body.model,
      body,
      prefix: () => prefixKey(body.messages),
      expectedTokens: body.max_completion_tokens ?? body.max_tokens ?? undefined
    })
    return await sendRouted(reply, res, ctx.writeStallMs)
  })

  app.post('/v1/completions', async (req, reply) => {
    const body = parseBody(CompletionBody, req.body)
    const res = await routeRequest(ctx, req, reply, {
      path: '/v1/completions',
      model: body.model,
      body,
      prefix: () => typeof body.prompt === 'string' ? prefixKey(body.prompt) : undefined,
      expectedTokens: body.max_tokens ?? undefined
    })
    return await sendRouted(reply, res, ctx.writeStallMs)
  })

  app.post('/v1/embeddings', async (req, reply) => {
    const body = parseBody(EmbeddingBody, req.body)
    const res = await routeRequest(ctx, req, reply, { path: '/v1/embeddings', model: body.model, body, expectedTokens: 1 })
    return await sendRouted(reply, res, ctx.writeStallMs)
  })
}
