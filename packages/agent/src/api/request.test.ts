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
    path: '/v1/chat/completions', model: 'm', body: {}, prefix: () => { keyed++; return 'k1' }
  }) as unknown as DispatchRequest
  return { req: out, keyed }
}

describe('routeRequest', () => {
  it('computes the prefix key only for prefix-affinity, from the config or the header', async () => {
    const byConfig = await routed('prefix-affinity')
    expect(byConfig.req.prefixKey).toBe('k1')
    expect(byConfig.keyed).toBe(1)
    const byHeader = await routed('performance', 'prefix-affinity')
    expect(byHeader.req.prefixKey).toBe('k1')
    expect(byHeader.keyed).toBe(1)
    for (const [strategy, header] of [['performance', undefined], ['prefix-affinity', 'least-loaded']] as const) {
      const other = await routed(strategy, header)
      expect(other.req.strategy).toBe(header ?? strategy)
      expect(other.req.prefixKey).toBeUndefined()
      expect(other.keyed).toBe(0)
    }
  })
})
