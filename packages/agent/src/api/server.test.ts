import { describe, expect, it } from 'vitest'
import pino from 'pino'
import type { DispatchRequest, RoutedResponse } from '../router.js'
import { LlmeshError, QueueFullError } from '@llmesh/protocol'
import type { AgentPort, MeshView } from './port.js'
import { buildHttpServer, type HttpApiInit } from './server.js'

const enc = new TextEncoder()

const init: HttpApiInit = {
  // off loopback: no Host check, and every request needs a key (the port's keys take 'k')
  host: '0.0.0.0',
  allowedHosts: [],
  bodyLimit: 1024 * 1024,
  requestTimeoutMs: 60_000,
  headersTimeoutMs: 10_000,
  keepAliveTimeoutMs: 72_000,
  maxConnections: 100,
  strategy: 'performance',
  deadlineMs: 120_000,
  writeStallMs: 30_000
}
const auth = { authorization: 'Bearer k' }

const view: MeshView = { self: 'p1', trust: { mode: 'home' }, nodes: [], placements: [], pins: [] }

/** A port that answers every request with `answer` and records what it was asked. */
function fakePort (answer: (req: DispatchRequest) => RoutedResponse): AgentPort & { asked: DispatchRequest[], inFlight: number, pinCalls: Array<[string, string | undefined, boolean]> } {
  const port = {
    peerId: 'p1',
    asked: [] as DispatchRequest[],
    inFlight: 0,
    infer: async (req: DispatchRequest) => { port.asked.push(req); return answer(req) },
    trackRequest: () => { port.inFlight++; return () => { port.inFlight-- } },
    view: () => view,
    meshStats: () => ({ peers: 0 }),
    localRunners: () => [],
    admission: () => [],
    apiKeys: { hasKeys: async () => true, verify: async (k: string) => k === 'k' },
    pinCalls: [] as Array<[string, string | undefined, boolean]>,
    localPlacements: () => [],
    requests: { on: () => () => {} },
    pins: () => port.pinCalls.filter(([, , pinned]) => pinned).map(([model, host]) => host != null ? { model, host } : { model }),
    setPin: (model: string, host: string | undefined, pinned: boolean) => { port.pinCalls.push([model, host, pinned]); return port.pins() }
  }
  return port
}

async function * bytes (parts: string[]): AsyncGenerator<Uint8Array> { for (const p of parts) yield enc.encode(p) }

const sse = (parts: string[]): RoutedResponse => ({
  status: 200, contentType: 'text/event-stream', body: bytes(parts), attempts: 1, target: { peerId: 'p1', runnerId: 'r1', local: true, reasons: ['strategy=round-robin'] }
})

const SSE_ANSWER = [
  'data: {"choices":[{"delta":{"role":"assistant","content":"Hi"}}]}\n\n',
  'data: {"choices":[{"delta":{"content":"!"},"finish_reason":"stop"}]}\n\n',
  'data: {"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":2}}\n\n',
  'data: [DONE]\n\n'
]

describe('the HTTP API over a port (no agent)', () => {
  it('routes an OpenAI chat completion with the llmesh headers and streams the answer back with the route headers', async () => {
    const port = fakePort(() => sse(SSE_ANSWER))
    const app = buildHttpServer(init, port, pino({ level: 'silent' }))
    const before = Date.now()
    const res = await app.inject({
      method: 'POST',
      url: '/v1/chat/completions',
      headers: { ...auth, 'x-llmesh-strategy': 'round-robin', 'x-llmesh-priority': '7', 'x-llmesh-deadline-ms': '5000' },
      payload: { model: 'tiny', stream: true, max_tokens: 3, messages: [{ role: 'user', content: 'hi' }] }
    })
    expect(res.statusCode).toBe(200)
    expect(res.headers['content-type']).toBe('text/event-stream')
    expect(res.headers['x-llmesh-node']).toBe('p1')
    expect(res.headers['x-llmesh-runner']).toBe('r1')
    expect(res.headers['x-llmesh-route']).toBe('strategy=round-robin')
    expect(res.body).toBe(SSE_ANSWER.join(''))
    const asked = port.asked[0]!
    expect(asked).toMatchObject({ path: '/v1/chat/completions', model: 'tiny', strategy: 'round-robin', priority: 7, expectedTokens: 3 })
    expect(asked.deadline).toBeGreaterThanOrEqual(before + 5000)
    expect(asked.deadline).toBeLessThan(before + 60_000)
    expect(port.inFlight).toBe(0)
    await app.close()
  })

  it('answers an Ollama chat as NDJSON, translated from the OpenAI stream the mesh sent', async () => {
    const port = fakePort(() => sse(SSE_ANSWER))
    const app = buildHttpServer(init, port, pino({ level: 'silent' }))
    const res = await app.inject({ method: 'POST', url: '/api/chat', headers: auth, payload: { model: 'tiny', messages: [{ role: 'user', content: 'hi' }], options: { num_predict: 3 } } })
    expect(res.statusCode).toBe(200)
    expect(res.headers['content-type']).toBe('application/x-ndjson')
    const lines = res.body.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>)
    expect(lines.map((l) => (l['message'] as { content: string }).content)).toEqual(['Hi', '!', ''])
    expect(lines.at(-1)).toMatchObject({ done: true, done_reason: 'stop', prompt_eval_count: 4, eval_count: 2 })
    expect(port.asked[0]).toMatchObject({ path: '/v1/chat/completions', expectedTokens: 3, body: { stream: true, stream_options: { include_usage: true }, max_tokens: 3 } })
    await app.close()
  })

  it('answers errors in each dialect\'s shape: bad header 400, full queue 429 with Retry-After, no key 401, unknown route 404', async () => {
    const port = fakePort(() => { throw new QueueFullError('the queue is full', 2.2) })
    const app = buildHttpServer(init, port, pino({ level: 'silent' }))
    const chat = { model: 'tiny', messages: [{ role: 'user', content: 'hi' }] }
    const bad = await app.inject({ method: 'POST', url: '/v1/chat/completions', headers: { ...auth, 'x-llmesh-strategy': 'fastest-please' }, payload: chat })
    expect(bad.statusCode).toBe(400)
    expect(bad.json()).toMatchObject({ error: { type: 'invalid_request_error', code: 'invalid_request', message: expect.stringMatching(/unknown routing strategy/) } })
    const full = await app.inject({ method: 'POST', url: '/v1/chat/completions', headers: auth, payload: chat })
    expect(full.statusCode).toBe(429)
    expect(full.headers['retry-after']).toBe('3')
    const fullOllama = await app.inject({ method: 'POST', url: '/api/chat', headers: auth, payload: chat })
    expect(fullOllama.statusCode).toBe(429)
    expect(fullOllama.json()).toEqual({ error: 'the queue is full' })
    const noKey = await app.inject({ method: 'GET', url: '/v1/models' })
    expect(noKey.statusCode).toBe(401)
    expect(noKey.headers['www-authenticate']).toBe('Bearer realm="llmesh"')
    expect((await app.inject({ method: 'GET', url: '/api/nope', headers: auth })).json()).toEqual({ error: 'no route GET /api/nope' })
    expect((await app.inject({ method: 'GET', url: '/v1/nope', headers: auth })).json()).toMatchObject({ error: { code: 'invalid_request' } })
    expect((await app.inject({ method: 'GET', url: '/health' })).json()).toEqual({ ok: true, peerId: 'p1' })
    expect(port.inFlight).toBe(0)
    await app.close()
  })

  it('passes x-llmesh-load-anyway on, and answers a model that fits nowhere 507 with its message', async () => {
    const port = fakePort(() => { throw new LlmeshError('INSUFFICIENT_MEMORY', "model 'big' needs 12.40 GiB; the largest free host, 'a', has 7.93 GiB of 15.00 GiB") })
    const app = buildHttpServer(init, port, pino({ level: 'silent' }))
    const chat = { model: 'big', messages: [{ role: 'user', content: 'hi' }] }
    const res = await app.inject({ method: 'POST', url: '/v1/chat/completions', headers: { ...auth, 'x-llmesh-load-anyway': '1' }, payload: chat })
    expect(res.statusCode).toBe(507)
    expect(res.json()).toMatchObject({ error: { type: 'server_error', code: 'insufficient_memory', message: expect.stringMatching(/needs 12\.40 GiB.*has 7\.93 GiB/) } })
    expect(port.asked[0]).toMatchObject({ model: 'big', loadAnyway: true })
    await app.inject({ method: 'POST', url: '/v1/chat/completions', headers: auth, payload: chat })
    expect(port.asked[1]?.loadAnyway).toBeUndefined()
    await app.close()
  })

  it('pins and unpins through /admin/pins, and refuses a malformed body', async () => {
    const port = fakePort(() => sse(SSE_ANSWER))
    const app = buildHttpServer(init, port, pino({ level: 'silent' }))
    const pin = await app.inject({ method: 'POST', url: '/admin/pins', headers: auth, payload: { model: 'tiny', host: 'host-a' } })
    expect(pin.statusCode).toBe(200)
    expect(pin.json()).toEqual({ pins: [{ model: 'tiny', host: 'host-a' }] })
    expect((await app.inject({ method: 'GET', url: '/admin/pins', headers: auth })).json()).toEqual({ pins: [{ model: 'tiny', host: 'host-a' }] })
    const unpin = await app.inject({ method: 'DELETE', url: '/admin/pins', headers: auth, payload: { model: 'tiny' } })
    expect(unpin.statusCode).toBe(200)
    expect(port.pinCalls).toEqual([['tiny', 'host-a', true], ['tiny', undefined, false]])
    const bad = await app.inject({ method: 'POST', url: '/admin/pins', headers: auth, payload: { model: '', extra: 1 } })
    expect(bad.statusCode).toBe(400)
    expect(bad.json()).toMatchObject({ error: { code: 'invalid_request' } })
    expect((await app.inject({ method: 'POST', url: '/admin/pins', payload: { model: 'tiny' } })).statusCode).toBe(401)
    expect(port.pinCalls).toHaveLength(2)
    await app.close()
  })
})
