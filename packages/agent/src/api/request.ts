/**
 * From an API handler to the agent: the body checked, the llmesh headers read, the request tied
 * to the client's connection and handed to the port's `infer`.
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { z } from 'zod'
import { LlmeshError, type Clock, type InferPath } from '@llmesh/protocol'
import { Abort } from '@llmesh/kit'
import { estimatePromptTokens, type Strategy } from '@llmesh/scheduler'
import type { RoutedResponse } from '../router.js'
import { requestDeadlineMs, requestLoadAnyway, requestPriority, requestStrategy } from './headers.js'
import type { AgentPort } from './port.js'

/** What the routes work with: the agent's port and the request defaults, fixed when the server is built. */
export interface ApiContext {
  port: AgentPort
  /** routing strategy of a request without `x-llmesh-strategy` */
  strategy: Strategy
  /** longest wait for a slot of a request without `x-llmesh-deadline-ms`, ms */
  deadlineMs: number
  /** a client that reads nothing this long has its stream ended, ms */
  writeStallMs: number
  /** the agent's clock, on which the router and admission check the request's deadline */
  clock: Pick<Clock, 'now'>
  /** start models that do not fit a host's model memory when the request does not say (`placement.loadAnyway`) */
  loadAnyway: boolean
}

/** Validates a request body with zod: one clear message naming the field. */
export function parseBody<T> (schema: z.ZodType<T>, body: unknown): T {
  const parsed = schema.safeParse(body)
  if (parsed.success) return parsed.data
  const issue = parsed.error.issues[0]
  const where = issue != null && issue.path.length > 0 ? `${issue.path.join('.')}: ` : ''
  throw new LlmeshError('INVALID_REQUEST', `${where}${issue?.message ?? 'invalid request body'}`)
}

/** What an API handler hands to `routeRequest`. */
export interface ApiRequest {
  path: InferPath
  model: string
  body: Record<string, unknown>
  /**
   * The request's conversation key (see scheduler `prefixKey`), computed only when the request
   * is routed by a strategy that follows conversations (performance, prefix-affinity): hashing
   * a conversation's first messages costs about 25 us per 6 KB, for nothing under the others.
   */
  prefix?: () => string | undefined
  expectedTokens?: number | undefined
}

/**
 * Reads the llmesh request headers (strategy, priority, deadline: 400 when malformed), ties the
 * request to the client's connection and routes it. Resolves once a target's first chunk is in.
 */
export async function routeRequest (ctx: ApiContext, req: FastifyRequest, reply: FastifyReply, api: ApiRequest): Promise<RoutedResponse> {
  const strategy = requestStrategy(req.headers, ctx.strategy)
  const priority = requestPriority(req.headers)
  const deadlineMs = requestDeadlineMs(req.headers, ctx.deadlineMs)
  const loadAnyway = requestLoadAnyway(req.headers, ctx.loadAnyway)
  const controller = new Abort()
  const untrack = ctx.port.trackRequest(controller)
  reply.raw.on('close', () => {
    untrack()
    if (!reply.raw.writableFinished) controller.abort(new LlmeshError('INVALID_REQUEST', 'client went away'))
  })
  const prefix = strategy === 'prefix-affinity' || strategy === 'performance' ? api.prefix?.() : undefined
  return await ctx.port.infer({
    id: req.id,
    path: api.path,
    model: api.model,
    body: api.body,
    strategy,
    priority,
    ...(prefix != null ? { prefixKey: prefix, promptTokens: estimatePromptTokens(api.body) } : {}),
    ...(api.expectedTokens != null ? { expectedTokens: api.expectedTokens } : {}),
    deadline: ctx.clock.now() + deadlineMs,
    ...(loadAnyway ? { loadAnyway } : {}),
    signal: controller.signal
  })
}
