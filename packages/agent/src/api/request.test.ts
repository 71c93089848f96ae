import { EventEmitter } from 'node:events'
import { describe, expect, it } from 'vitest'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { DispatchRequest } from '../router.js'
import type { AgentPort } from './port.js'
import { routeRequest, type ApiContext } from './request.js'

/** A port whose infer() hands back what it was asked to route. */
function fakeContext (strategy: string): ApiContext {
  const port = { infer: async (req: DispatchRequest) => req, trackRequest: () => () => {} } as unknown as AgentPort
  return { port, strategy, deadlineMs: 60_000, writeStallMs: 30_000, clock: { now: Date.now } } as ApiContext
}

async function routed (strategy: string, header?: string): Promise<{ req: DispatchRequest, keyed: number }> {
  let keyed = 0
  const req = { id: 'r1', headers: header != null ? { 'x-llmesh-strategy': header } : {} } as unknown as FastifyRequest
  const reply = { raw: Object.assign(new EventEmitter(), { writableFinished: false }) } as unknown as FastifyReply
  const out = await routeRequest(fakeContext(strategy), req, reply, {
    path: '/v1/chat/completions', model: 'm', body: { messages: [{ role: 'user', content: 'hello there' }] }, prefix: () => { keyed++; return 'k1' }
  }) as unknown as DispatchRequest
  return { req: out, keyed }
}

describe('routeRequest', () => {
  it('computes the conversation key only for the strategies that follow conversations, from the config or the header', async () => {
    for (const [strategy, header] of [['prefix-affinity', undefined], ['least-loaded', 'prefix-affinity'], ['performance', undefined], ['round-robin', 'performance']] as const) {
      const r = await routed(strategy, header)
      expect(r.req.strategy).toBe(header ?? strategy)
      expect(r.req.prefixKey).toBe('k1')
      expect(r.req.promptTokens).toBeGreaterThan(0)
      expect(r.keyed).toBe(1)
    }
    for (const [strategy, header] of [['round-robin', undefined], ['prefix-affinity', 'least-loaded'], ['performance', 'random'], ['fastest', undefined]] as const) {
      const other = await routed(strategy, header)
      expect(other.req.strategy).toBe(header ?? strategy)
      expect(other.req.prefixKey).toBeUndefined()
      expect(other.req.promptTokens).toBeUndefined()
      expect(other.keyed).toBe(0)
    }
  })
})
