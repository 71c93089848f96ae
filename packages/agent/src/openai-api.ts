import type { FastifyInstance } from 'fastify'
import { z } from 'zod'
import { prefixKey } from '@llmesh/scheduler'
import type { Agent } from './agent.js'
import { parseBody, routeRequest, sendRouted } from './http.js'

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

export interface MeshModel {
  name: string
  /** the newest start time of the hosts that have it, ms */
  created: number
}

/** Models the reachable mesh serves or has on disk, by name. */
export function meshModels (agent: Agent): MeshModel[] {
  const seen = new Map<string, MeshModel>()
  for (const node of agent.view().nodes) {
    if (!node.connected || node.state === 'dead' || node.state === 'left') continue
    for (const name of [...node.models.map((m) => m.name), ...node.runners.filter((r) => r.kind !== 'rpc-server').map((r) => r.model)]) {
      if (!seen.has(name)) seen.set(name, { name, created: node.startedAt })
    }
  }
  return [...seen.values()].sort((a, b) => a.name.localeCompare(b.name))
}

/** `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`, `/v1/models`: OpenAI's API over the mesh. */
export function registerOpenAiApi (app: FastifyInstance, agent: Agent): void {
  app.get('/v1/models', async () => ({
    object: 'list',
    data: meshModels(agent).map((m) => ({ id: m.name, object: 'model', created: Math.floor(m.created / 1000), owned_by: 'llmesh' }))
  }))

  app.get<{ Params: { id: string } }>('/v1/models/:id', async (req, reply) => {
    const m = meshModels(agent).find((x) => x.name === req.params.id)
    if (m == null) {
      return await reply.status(404).send({ error: { message: `model '${req.params.id}' is not served in the mesh; models: ${meshModels(agent).map((x) => x.name).join(', ') || 'none'}`, type: 'invalid_request_error', code: 'model_not_found', param: null } })
    }
    return { id: m.name, object: 'model', created: Math.floor(m.created / 1000), owned_by: 'llmesh' }
  })

  app.post('/v1/chat/completions', async (req, reply) => {
    const body = parseBody(ChatCompletionBody, req.body)
    const res = await routeRequest(agent, req, reply, {
      path: '/v1/chat/completions',
      model: body.model,
      body,
      prefix: () => prefixKey(body.messages),
      expectedTokens: body.max_completion_tokens ?? body.max_tokens ?? undefined
    })
    return await sendRouted(reply, res, agent.config.limits.writeStallMs)
  })

  app.post('/v1/completions', async (req, reply) => {
    const body = parseBody(CompletionBody, req.body)
    const res = await routeRequest(agent, req, reply, {
      path: '/v1/completions',
      model: body.model,
      body,
      prefix: () => typeof body.prompt === 'string' ? prefixKey(body.prompt) : undefined,
      expectedTokens: body.max_tokens ?? undefined
    })
    return await sendRouted(reply, res, agent.config.limits.writeStallMs)
  })

  app.post('/v1/embeddings', async (req, reply) => {
    const body = parseBody(EmbeddingBody, req.body)
    const res = await routeRequest(agent, req, reply, { path: '/v1/embeddings', model: body.model, body, expectedTokens: 1 })
    return await sendRouted(reply, res, agent.config.limits.writeStallMs)
  })
}
