import { connect } from 'node:net'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import Fastify, { type FastifyInstance } from 'fastify'
import { LlmeshError } from '@llmesh/protocol'
import { streamTo } from './respond.js'

const enc = new TextEncoder()
const trailer = (e: LlmeshError): string => `error: ${e.code}\n`

let app: FastifyInstance | undefined
afterEach(async () => {
  await app?.close()
  app = undefined
})

/** A server whose one route streams `source()` to the client with streamTo. */
function serve (source: () => AsyncIterable<Uint8Array | string>, stallMs = 30_000): FastifyInstance {
  app = Fastify()
  app.get('/s', async (req, reply) => {
    await streamTo(reply.header('content-type', 'text/plain'), source(), trailer, stallMs)
  })
  return app
}

describe('streamTo', () => {
  it('writes every chunk in order, strings and bytes alike, and ends the response', async () => {
    const parts = ['data: a\n\n', 'data: b\n\n', 'data: c\n\n', 'data: [DONE]\n\n']
    const res = await serve(async function * () {
      for (const [i, p] of parts.entries()) {
        yield i % 2 === 0 ? p : enc.encode(p)
        if (i === 1) await new Promise((resolve) => setTimeout(resolve, 20)) // a later window
      }
    }).inject({ method: 'GET', url: '/s' })
    expect(res.statusCode).toBe(200)
    expect(res.body).toBe(parts.join(''))
  })

  it('sends what was gathered before a failure ahead of the trailer, then ends', async () => {
    const res = await serve(async function * () {
      yield enc.encode('one ')
      yield enc.encode('two ')
      throw new LlmeshError('RUNNER_FAILED', 'the runner died')
    }).inject({ method: 'GET', url: '/s' })
    expect(res.body).toBe('one two error: RUNNER_FAILED\n')
  })

  it('ends the stream of a client that reads nothing for writeStallMs, with the trailer, and stops the source', async () => {
    let stopped = false
    let produced = 0
    const block = new Uint8Array(64 * 1024).fill(120)
    const server = serve(() => (async function * () {
      try {
        for (;;) {
          produced++
          yield block
        }
      } finally {
        stopped = true
      }
    })(), 300)
    await server.listen({ port: 0, host: '127.0.0.1' })
    const socket = connect((server.server.address() as AddressInfo).port, '127.0.0.1')
    socket.write('GET /s HTTP/1.1\r\nhost: x\r\n\r\n')
    socket.pause() // a client that never reads
    await expect.poll(() => stopped, { timeout: 10_000 }).toBe(true)
    // held back while the client's socket was full: far less than an unbounded writer would queue
    expect(produced).toBeLessThan(1000)
    socket.destroy()
  })
})
