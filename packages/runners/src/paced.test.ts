import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { Pool } from 'undici'
import { afterEach, describe, expect, it } from 'vitest'
import { RUNNER_CONNECT, requestPaced, requestWhole } from './paced.js'

let server: Server | undefined
let pool: Pool | undefined

afterEach(async () => {
  await pool?.destroy()
  server?.closeAllConnections()
  await new Promise<void>((resolve) => { server?.close(() => { resolve() }) ?? resolve() })
  server = pool = undefined
})

async function serve (handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<Pool> {
  server = createServer(handler)
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve))
  pool = new Pool(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, { connections: 2, pipelining: 1, connect: RUNNER_CONNECT })
  return pool
}

const sse = (i: number): string => `data: {"n":${i}}\n\n`

async function readAll (body: AsyncIterable<Uint8Array>): Promise<string[]> {
  const out: string[] = []
  for await (const chunk of body) out.push(Buffer.from(chunk).toString())
  return out
}

describe('requestPaced', () => {
  it('passes the first chunk at once and holds the ones that follow within the window, delivered together', async () => {
    const p = await serve((req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      res.write(sse(0))
      // nine more chunks 10 ms apart, all well inside the (long) window of the test
      void (async () => {
        await sleep(20)
        for (let i = 1; i < 10; i++) { res.write(sse(i)); await sleep(10) }
        res.end('data: [DONE]\n\n')
      })()
    })
    const res = await requestPaced(p, { path: '/v1/chat/completions', body: '{"stream":true}', signal: new AbortController().signal, windowMs: 400 })
    expect(res.status).toBe(200)
    expect(res.contentType).toBe('text/event-stream')
    const chunks = await readAll(res.body)
    expect(chunks[0]).toBe(sse(0))
    // everything after the first token came as one batch
    expect(chunks.length).toBe(2)
    expect(chunks.join('')).toBe([...Array.from({ length: 10 }, (_, i) => sse(i)), 'data: [DONE]\n\n'].join(''))
  })

  it('passes a stream slower than the window chunk by chunk', async () => {
    const p = await serve((req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      void (async () => {
        for (let i = 0; i < 4; i++) { res.write(sse(i)); await sleep(60) }
        res.end()
      })()
    })
    const res = await requestPaced(p, { path: '/x', body: '{}', signal: new AbortController().signal, windowMs: 5 })
    expect(await readAll(res.body)).toEqual([0, 1, 2, 3].map(sse))
  })

  it('stops reading the runner while the consumer is far behind, and loses nothing', async () => {
    const total = 16 * 1024 * 1024
    let written = 0
    let serverDone = false
    const p = await serve((req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      const block = Buffer.alloc(64 * 1024, 'x')
      const more = (): void => {
        while (written < total) {
          written += block.length
          if (!res.write(block)) { res.once('drain', more); return }
        }
        serverDone = true
        res.end()
      }
      more()
    })
    const res = await requestPaced(p, { path: '/x', body: '{}', signal: new AbortController().signal, windowMs: 1 })
    // nothing taken for a while: a reader without backpressure would have pulled all 16 MB
    // into memory by now; this one holds about 1 MB and the rest waits in the server
    await sleep(500)
    expect(serverDone).toBe(false)
    expect(written).toBeLessThan(total)
    let got = 0
    for await (const chunk of res.body) got += chunk.length
    expect(got).toBe(total)
    expect(serverDone).toBe(true)
  })

  it('hands back an error status and its body like any answer', async () => {
    const p = await serve((req, res) => {
      res.writeHead(503, { 'content-type': 'application/json' })
      res.end('{"error":{"message":"loading model"}}')
    })
    const res = await requestPaced(p, { path: '/x', body: '{}', signal: new AbortController().signal })
    expect(res.status).toBe(503)
    expect((await readAll(res.body)).join('')).toBe('{"error":{"message":"loading model"}}')
  })

  it('delivers what it read, then fails, when the runner drops the connection midway', async () => {
    const p = await serve((req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      res.write(sse(0))
      setTimeout(() => { res.socket?.destroy() }, 30)
    })
    const res = await requestPaced(p, { path: '/x', body: '{}', signal: new AbortController().signal, windowMs: 5 })
    const got: string[] = []
    await expect((async () => { for await (const c of res.body) got.push(Buffer.from(c).toString()) })()).rejects.toThrow()
    expect(got).toEqual([sse(0)])
  })

  it('aborts the runner request when the signal fires or the reader stops', async () => {
    let closed = 0
    const p = await serve((req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      const t = setInterval(() => { res.write(sse(1)) }, 5)
      res.on('close', () => { clearInterval(t); closed++ })
    })
    const ac = new AbortController()
    const a = await requestPaced(p, { path: '/x', body: '{}', signal: ac.signal })
    const it = a.body[Symbol.asyncIterator]()
    await it.next()
    ac.abort(new Error('client left'))
    await expect((async () => { for (;;) if ((await it.next()).done === true) break })()).rejects.toThrow('client left')

    const b = await requestPaced(p, { path: '/x', body: '{}', signal: new AbortController().signal })
    for await (const chunk of b.body) { expect(chunk.length).toBeGreaterThan(0); break }
    await expect.poll(() => closed, { timeout: 5000 }).toBe(2)
  })

  it('refuses at once on an aborted signal, and fails on a runner that is not there', async () => {
    const p = await serve((req, res) => { res.end() })
    const ac = new AbortController()
    ac.abort(new Error('gone'))
    await expect(requestPaced(p, { path: '/x', body: '{}', signal: ac.signal })).rejects.toThrow('gone')
    const nowhere = new Pool('http://127.0.0.1:9', { connect: RUNNER_CONNECT })
    await expect(requestPaced(nowhere, { path: '/x', body: '{}', signal: new AbortController().signal })).rejects.toThrow()
    await nowhere.destroy()
  })
})

describe('requestWhole', () => {
  it('resolves with the whole body once it is in, its chunks joined, status and type as sent', async () => {
    const p = await serve((req, res) => {
      res.writeHead(404, { 'content-type': 'application/json; charset=utf-8' })
      res.write('{"error":')
      setTimeout(() => { res.end('"no such model"}') }, 30)
    })
    const res = await requestWhole(p, { path: '/v1/embeddings', body: '{}', signal: new AbortController().signal })
    expect(res.status).toBe(404)
    expect(res.contentType).toBe('application/json; charset=utf-8')
    expect(Buffer.from(res.body).toString()).toBe('{"error":"no such model"}')
  })

  it('fails on a body over the limit, on a runner that drops the connection midway, and on one that is not there', async () => {
    let dropped = 0
    const p = await serve((req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', ...(req.url === '/drop' ? { 'content-length': '100' } : {}) })
      if (req.url === '/drop') {
        res.write('{"partial":')
        setTimeout(() => { dropped++; res.destroy() }, 20)
        return
      }
      res.end('x'.repeat(2048))
    })
    await expect(requestWhole(p, { path: '/big', body: '{}', signal: new AbortController().signal, limit: 1024 })).rejects.toThrow('runner response larger than 1024 bytes')
    await expect(requestWhole(p, { path: '/drop', body: '{}', signal: new AbortController().signal })).rejects.toThrow()
    expect(dropped).toBe(1)
    // the pool still serves after both
    expect((await requestWhole(p, { path: '/ok', body: '{}', signal: new AbortController().signal })).body.length).toBe(2048)
    const nowhere = new Pool('http://127.0.0.1:9', { connect: RUNNER_CONNECT })
    await expect(requestWhole(nowhere, { path: '/x', body: '{}', signal: new AbortController().signal })).rejects.toThrow()
    await nowhere.destroy()
  })

  it('aborts the runner request when the signal fires, before the head or during the body, and refuses an aborted one', async () => {
    let closed = 0
    const p = await serve((req, res) => {
      res.on('close', () => { closed++ })
      if (req.url === '/body') {
        res.writeHead(200, { 'content-type': 'application/json' })
        res.write('{"partial":')
      }
    })
    for (const path of ['/head', '/body']) {
      const ac = new AbortController()
      const pending = requestWhole(p, { path, body: '{}', signal: ac.signal })
      setTimeout(() => { ac.abort(new Error(`client left ${path}`)) }, 50)
      await expect(pending).rejects.toThrow(`client left ${path}`)
    }
    await expect.poll(() => closed, { timeout: 5000 }).toBe(2)
    const ac = new AbortController()
    ac.abort(new Error('gone'))
    await expect(requestWhole(p, { path: '/x', body: '{}', signal: ac.signal })).rejects.toThrow('gone')
  })
})
