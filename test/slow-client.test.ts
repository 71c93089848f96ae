/**
 * A client that stops reading a long stream routed to another host: two real agent processes
 * on loopback, B adopting a local OpenAI-compatible server (through its `mlx` option) that
 * streams a 48 MB answer as fast as its socket takes it, A with no model. While the client
 * does not read, backpressure must reach the runner (it stops being read) instead of the answer
 * piling up in an agent's memory or the stream being aborted; afterwards the whole answer
 * arrives.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createServer, request as httpRequest, type IncomingMessage, type Server } from 'node:http'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { once } from 'node:events'
import { startAgentProcess, type AgentProcess, LOOPBACK_AGENT_ARGS, waitForReadyRunner } from '@llmesh/fixtures'

const EVENTS = 3000
/** one SSE event of about 16 KB: a content delta of 16,000 characters */
const event = (i: number): string => `data: {"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"${String(i % 10).repeat(16_000)}"},"finish_reason":null}]}\n\n`
const TOTAL = Array.from({ length: EVENTS }, (_, i) => event(i).length).reduce((a, b) => a + b, 0)

let dir: string
let runner: Server
let written = 0
let a: AgentProcess
let b: AgentProcess

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'llmesh-slow-client-'))
  runner = createServer((req, res) => {
    if (req.url === '/health') return void res.end('{"status":"ok"}')
    if (req.url === '/v1/models') return void res.writeHead(200, { 'content-type': 'application/json' }).end('{"object":"list","data":[{"id":"bulk","object":"model"}]}')
    req.resume()
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      void (async () => {
        for (let i = 0; i < EVENTS; i++) {
          const e = event(i)
          written += e.length
          if (!res.write(e)) {
            // the loser's listener goes with the signal: one per wait would pile up on `res`
            const settled = new AbortController()
            await Promise.race([once(res, 'drain', { signal: settled.signal }), once(res, 'close', { signal: settled.signal })])
            settled.abort()
          }
          if (res.destroyed) return
        }
        res.end('data: [DONE]\n\n')
      })()
    })
  })
  await new Promise<void>((resolve) => runner.listen(0, '127.0.0.1', resolve))
  const cfg = join(dir, 'bulk.json')
  await writeFile(cfg, JSON.stringify({ mlx: { url: `http://127.0.0.1:${(runner.address() as { port: number }).port}`, model: 'bulk', slots: 2 } }))
  b = await startAgentProcess({ name: 'host-b', dataDir: join(dir, 'b'), args: [...LOOPBACK_AGENT_ARGS, '--config', cfg] })
  a = await startAgentProcess({ name: 'host-a', dataDir: join(dir, 'a'), args: [...LOOPBACK_AGENT_ARGS, '--bootstrap', b.info.addrs[0]!] })
  await waitForReadyRunner(a, b)
}, 120_000)

afterAll(async () => {
  await Promise.all([a?.stop(), b?.stop()])
  runner?.closeAllConnections()
  await new Promise((resolve) => runner?.close(resolve))
  await rm(dir, { recursive: true, force: true })
})

describe('a client that stops reading a stream served by another host', () => {
  it('holds the runner back while it does not read, then gets the whole answer', async () => {
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      const req = httpRequest(`${a.info.api}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' } }, resolve)
      req.on('error', reject)
      req.end(JSON.stringify({ model: 'bulk', stream: true, messages: [{ role: 'user', content: 'everything' }] }))
    })
    expect(res.statusCode).toBe(200)
    expect(res.headers['x-llmesh-node']).toBe(b.info.peerId)
    res.pause()
    // long enough for the runner to fill every buffer on the way if nothing held it back
    await new Promise((resolve) => setTimeout(resolve, 1500))
    const writtenWhilePaused = written
    expect(writtenWhilePaused).toBeLessThan(TOTAL / 2)
    let received = 0
    let tail = ''
    res.on('data', (chunk: Buffer) => {
      received += chunk.length
      tail = (tail + chunk.toString('latin1')).slice(-200)
    })
    res.resume()
    await once(res, 'end')
    expect(received).toBe(TOTAL + 'data: [DONE]\n\n'.length)
    expect(tail.endsWith('data: [DONE]\n\n')).toBe(true)
    expect(written).toBe(TOTAL)
  }, 60_000)
})
