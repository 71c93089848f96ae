import { describe, expect, it } from 'vitest'
import Fastify from 'fastify'
import type { IncomingHttpHeaders } from 'node:http'
import { LlmeshError } from '@llmesh/protocol'
import { STRATEGIES } from '@llmesh/scheduler'
import type { RoutedResponse } from '../router.js'
import { headerValue, MAX_DEADLINE_MS, requestDeadlineMs, requestLoadAnyway, requestPriority, requestStrategy, routeHeaders } from './headers.js'

function codeAndMessage (fn: () => unknown): { code?: string, message?: string } {
  try { fn() } catch (err) { return { code: (err as { code?: string }).code, message: (err as Error).message } }
  return {}
}

describe('x-llmesh-* request headers', () => {
  const h = (headers: Record<string, string | string[]>): IncomingHttpHeaders => headers

  it('strategy: the fallback when absent or empty; case and blanks ignored; an unknown name refused with the valid ones', () => {
    expect(requestStrategy(h({}), 'round-robin')).toBe('round-robin')
    expect(requestStrategy(h({ 'x-llmesh-strategy': '  ' }), 'fastest')).toBe('fastest')
    expect(requestStrategy(h({ 'x-llmesh-strategy': ' Least-Loaded ' }), 'performance')).toBe('least-loaded')
    expect(requestStrategy(h({ 'x-llmesh-strategy': ['random'] }), 'performance')).toBe('random')
    for (const s of STRATEGIES) expect(requestStrategy(h({ 'x-llmesh-strategy': ` ${s.toUpperCase()} ` }), 'performance')).toBe(s)
    let err: unknown
    try { requestStrategy(h({ 'x-llmesh-strategy': 'fastest-please' }), 'performance') } catch (e) { err = e }
    expect(err).toBeInstanceOf(LlmeshError)
    expect((err as LlmeshError).status).toBe(400)
    expect((err as LlmeshError).message).toBe("unknown routing strategy 'fastest-please'; valid strategies: performance, least-loaded, round-robin, fastest, random, prefix-affinity")
    const bad = codeAndMessage(() => requestStrategy(h({ 'x-llmesh-strategy': 'fastest-please' }), 'performance'))
    expect(bad.code).toBe('INVALID_REQUEST')
    expect(bad.message).toMatch(/unknown routing strategy 'fastest-please'; valid strategies: performance, least-loaded/)
    expect(codeAndMessage(() => requestStrategy(h({ 'x-llmesh-strategy': ['random', 'fastest'] }), 'performance')).message).toMatch(/x-llmesh-strategy given more than once/)
  })

  it('priority: an integer 0-10, 5 when absent or empty', () => {
    expect(requestPriority(h({}))).toBe(5)
    expect(requestPriority(h({ 'x-llmesh-priority': '' }))).toBe(5)
    expect(requestPriority(h({ 'x-llmesh-priority': ' 10 ' }))).toBe(10)
    expect(requestPriority(h({ 'x-llmesh-priority': '0' }))).toBe(0)
    for (const bad of ['11', '-1', '2.5', 'high', 'NaN']) {
      expect(codeAndMessage(() => requestPriority(h({ 'x-llmesh-priority': bad }))), bad).toMatchObject({ code: 'INVALID_REQUEST', message: expect.stringMatching(/integer from 0 to 10/) })
    }
    expect(codeAndMessage(() => requestPriority(h({ 'x-llmesh-priority': ['1', '2'] }))).message).toMatch(/more than once/)
  })

  it('deadline: whole ms from 1 to 24 h, the fallback when absent', () => {
    expect(requestDeadlineMs(h({}), 120_000)).toBe(120_000)
    expect(requestDeadlineMs(h({ 'x-llmesh-deadline-ms': ' 1500 ' }), 120_000)).toBe(1500)
    expect(requestDeadlineMs(h({ 'x-llmesh-deadline-ms': String(MAX_DEADLINE_MS) }), 1)).toBe(MAX_DEADLINE_MS)
    for (const bad of ['0', '1.5', String(MAX_DEADLINE_MS + 1), 'soon']) {
      expect(codeAndMessage(() => requestDeadlineMs(h({ 'x-llmesh-deadline-ms': bad }), 1)), bad).toMatchObject({ code: 'INVALID_REQUEST', message: expect.stringMatching(/x-llmesh-deadline-ms must be a whole number/) })
    }
    expect(codeAndMessage(() => requestDeadlineMs(h({ 'x-llmesh-deadline-ms': ['1', '2'] }), 1)).message).toMatch(/x-llmesh-deadline-ms given more than once/)
  })

  it('load-anyway: 1/true/0/false in any case, the config\'s value when absent or empty', () => {
    expect(requestLoadAnyway(h({}), false)).toBe(false)
    expect(requestLoadAnyway(h({}), true)).toBe(true)
    expect(requestLoadAnyway(h({ 'x-llmesh-load-anyway': ' ' }), true)).toBe(true)
    expect(requestLoadAnyway(h({ 'x-llmesh-load-anyway': '1' }), false)).toBe(true)
    expect(requestLoadAnyway(h({ 'x-llmesh-load-anyway': 'TRUE' }), false)).toBe(true)
    expect(requestLoadAnyway(h({ 'x-llmesh-load-anyway': '0' }), true)).toBe(false)
    expect(requestLoadAnyway(h({ 'x-llmesh-load-anyway': 'false' }), true)).toBe(false)
    for (const bad of ['yes', '2', 'on']) {
      expect(codeAndMessage(() => requestLoadAnyway(h({ 'x-llmesh-load-anyway': bad }), false)), bad).toMatchObject({ code: 'INVALID_REQUEST', message: expect.stringMatching(/x-llmesh-load-anyway must be 1, true, 0 or false/) })
    }
  })
})

describe('route headers carry peer strings safely', () => {
  it('percent-encodes controls and non-ASCII, cuts long values, keeps plain ids as they are', () => {
    expect(headerValue('12D3KooWabc-0-llama-tiny', 256)).toBe('12D3KooWabc-0-llama-tiny')
    expect(headerValue('r\r\nset-cookie: a=b', 256)).toBe('r%0D%0Aset-cookie: a=b')
    expect(headerValue('ünï→\ud800%', 256)).toBe('%C3%BCn%C3%AF%E2%86%92%EF%BF%BD%25')
    expect(headerValue('x'.repeat(1000), 256)).toHaveLength(256)
  })

  it('a runner id with CR/LF or non-latin1 neither crashes the reply nor adds a header', async () => {
    const app = Fastify()
    const routed = (runnerId: string, peerId: string): RoutedResponse => ({
      status: 200, contentType: 'application/json', body: [], attempts: 1,
      target: { peerId, runnerId, local: false, reasons: ['performance', `tried ${peerId}: connect\r\nx-evil: 1`] }
    })
    app.get('/r', async (_req, reply) => await routeHeaders(reply, routed('run\r\nx-injected: yes\u2028', 'peer\u4e2d\u0000')).send({ ok: true }))
    const res = await app.inject({ method: 'GET', url: '/r' })
    expect(res.statusCode).toBe(200)
    expect(res.headers['x-injected']).toBeUndefined()
    expect(res.headers['x-evil']).toBeUndefined()
    expect(res.headers['x-llmesh-runner']).toBe('run%0D%0Ax-injected: yes%E2%80%A8')
    expect(res.headers['x-llmesh-node']).toBe('peer%E4%B8%AD%00')
    expect(String(res.headers['x-llmesh-route'])).toContain('connect%0D%0Ax-evil: 1')
    await app.close()
  })
})
