import { afterEach, describe, expect, it } from 'vitest'
import { connect, type Socket } from 'node:net'
import pino from 'pino'
import { request } from 'undici'
import type { FastifyInstance } from 'fastify'
import { UI_MAX_CLIENTS } from '../constants.js'
import type { RequestEvent } from '../request-events.js'
import type { AgentPort, MeshView } from './port.js'
import { buildHttpServer, type HttpApiInit } from './server.js'

const init: HttpApiInit = {
  // off loopback: every request needs a key (the port's keys take 'k')
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

/** A port whose view is `view()` and whose request events are sent with `emit`. */
function fakePort (view: () => MeshView): AgentPort & { emit: (e: RequestEvent) => void, listeners: number } {
  const listeners = new Set<(e: RequestEvent) => void>()
  return {
    peerId: 'p1',
    infer: async () => { throw new Error('not here') },
    trackRequest: () => () => {},
    view,
    meshStats: () => ({}),
    localRunners: () => [],
    admission: () => [],
    apiKeys: { hasKeys: async () => true, verify: async (k: string) => k === 'k' },
    localPlacements: () => [],
    pins: () => [],
    setPin: () => [],
    requests: { on: (fn) => { listeners.add(fn); return () => { listeners.delete(fn) } } },
    emit: (e) => { for (const fn of listeners) fn(e) },
    get listeners () { return listeners.size }
  }
}

const smallView = (): MeshView => ({ self: 'p1', trust: { mode: 'home' }, nodes: [], placements: [], pins: [] })

const event: RequestEvent = { id: 'r1', model: 'tiny', strategy: 'performance', entry: 'p1', target: 'p2', local: false, outcome: 'ok', ttftMs: 12, durationMs: 40, attempts: 1, reasons: ['strategy=performance'], at: 1 }

let app: FastifyInstance | undefined
const sockets: Socket[] = []

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy()
  await app?.close()
  app = undefined
})

async function serve (port: AgentPort): Promise<string> {
  app = buildHttpServer(init, port, pino({ level: 'silent' }))
  await app.listen({ host: '127.0.0.1', port: 0 })
  const a = app.server.address()
  if (a == null || typeof a === 'string') throw new Error('no address')
  return `http://127.0.0.1:${a.port}`
}

/** Opens the event stream and collects its text until `until` holds in it; the stream stays open until `close`. */
async function readStream (url: string, until: (text: string) => boolean): Promise<{ status: number, text: string, close: () => void }> {
  const ac = new AbortController()
  const res = await request(url, { signal: ac.signal })
  const close = (): void => { ac.abort() }
  if (res.statusCode !== 200) return { status: res.statusCode, text: await res.body.text(), close }
  let text = ''
  await new Promise<void>((resolve, reject) => {
    res.body.on('data', (chunk: Buffer) => { text += chunk.toString('utf8'); if (until(text)) resolve() })
    res.body.on('error', (err) => { if (!ac.signal.aborted) reject(err) })
    res.body.on('end', () => { resolve() })
  })
  return { status: res.statusCode, text, close }
}

async function poll<T> (what: string, fn: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await fn()
    if (v !== undefined && v !== false) return v
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

describe('dashboard routes', () => {
  it('serves the page and its files without a key, with a CSP that allows only this origin', async () => {
    const base = await serve(fakePort(smallView))
    for (const [path, type] of [['/ui', 'text/html'], ['/ui/', 'text/html'], ['/ui/app.js', 'text/javascript'], ['/ui/style.css', 'text/css']] as const) {
      const res = await request(`${base}${path}`)
      expect(res.statusCode, path).toBe(200)
      expect(String(res.headers['content-type'])).toContain(type)
      expect(String(res.headers['content-security-policy'])).toContain("default-src 'none'")
      expect((await res.body.text()).length).toBeGreaterThan(100)
    }
    const page = await (await request(`${base}/ui`)).body.text()
    expect(page).toContain('/ui/app.js')
    expect(page).not.toMatch(/https?:\/\//)
    // everything else under /ui is not a file of the dashboard
    expect((await request(`${base}/ui/../mesh/view`)).statusCode).not.toBe(200)
    const other = await request(`${base}/ui/secret.json`)
    expect(other.statusCode).toBe(401)
    await other.body.text()
  })

  it('guards the event stream: the key in the header or in ?key=, never ?key= elsewhere', async () => {
    const base = await serve(fakePort(smallView))
    const none = await readStream(`${base}/ui/events`, () => true)
    expect(none.status).toBe(401)
    expect(none.text).toContain('needs a key')
    expect((await readStream(`${base}/ui/events?key=nope`, () => true)).status).toBe(401)
    const ok = await readStream(`${base}/ui/events?key=k`, (t) => t.includes('event: view'))
    ok.close()
    expect(ok.status).toBe(200)
    const view = /event: view\ndata: (.*)\n\n/.exec(ok.text)
    expect(JSON.parse(view![1]!)).toEqual(smallView())
    const elsewhere = await request(`${base}/mesh/view?key=k`)
    expect(elsewhere.statusCode).toBe(401)
    await elsewhere.body.text()
  })

  it('streams each request that ended, and the last ones to a page opened later', async () => {
    const port = fakePort(smallView)
    const base = await serve(port)
    // other parts of the API may listen too (the metrics)
    const others = port.listeners
    const first = readStream(`${base}/ui/events?key=k`, (t) => t.includes('event: request'))
    await poll('the stream to listen to requests', () => port.listeners === others + 1)
    port.emit(event)
    const { text, close } = await first
    close()
    expect(text).toContain(`event: request\ndata: ${JSON.stringify(event)}\n\n`)
    const later = await readStream(`${base}/ui/events?key=k`, (t) => t.includes('event: request'))
    later.close()
    expect(later.text).toContain(JSON.stringify(event))
  })

  it(`serves at most ${UI_MAX_CLIENTS} streams at once, and a new one once one closed`, async () => {
    const base = await serve(fakePort(smallView))
    const open = []
    for (let i = 0; i < UI_MAX_CLIENTS; i++) open.push(await readStream(`${base}/ui/events?key=k`, (t) => t.includes('event: view')))
    expect(open.every((s) => s.status === 200)).toBe(true)
    const refused = await readStream(`${base}/ui/events?key=k`, () => true)
    expect(refused.status).toBe(503)
    expect(refused.text).toContain('dashboard streams')
    open.pop()!.close()
    const again = await poll('a stream to be taken again', async () => {
      const s = await readStream(`${base}/ui/events?key=k`, (t) => t.includes('event: view'))
      return s.status === 200 ? s : undefined
    })
    again.close()
    for (const s of open) s.close()
  })

  it('drops a client that stops reading instead of buffering for it', async () => {
    // a view of ~2 MB per snapshot: a client that reads nothing fills the socket within a few
    const big = 'x'.repeat(2 * 1024 * 1024)
    const base = await serve(fakePort(() => ({ ...smallView(), self: big })))
    const { port } = new URL(base)
    const socket = connect(Number(port), '127.0.0.1')
    sockets.push(socket)
    socket.on('error', () => {})
    await new Promise<void>((resolve) => socket.once('connect', () => { resolve() }))
    socket.write(`GET /ui/events?key=k HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`)
    socket.pause()
    const connections = async (): Promise<number> => await new Promise((resolve, reject) => { app!.server.getConnections((err, n) => { if (err != null) reject(err); else resolve(n) }) })
    await poll('the stream to open', async () => await connections() === 1)
    await poll('the server to drop the client that does not read', async () => await connections() === 0, 30_000)
    // the agent still serves others
    const other = await readStream(`${base}/ui/events?key=k`, (t) => t.includes('event: view'))
    other.close()
    expect(other.status).toBe(200)
  }, 40_000)

  it('ends the open streams when the server closes', async () => {
    const base = await serve(fakePort(smallView))
    const res = await request(`${base}/ui/events?key=k`)
    const ended = (async () => { for await (const _ of res.body) { /* read to the end */ } return true })()
    await app!.close()
    app = undefined
    expect(await ended).toBe(true)
  })
})
