import { readFileSync } from 'node:fs'
import type { ServerResponse } from 'node:http'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { LlmeshError } from '@llmesh/protocol'
import { UI_HEARTBEAT_MS, UI_MAX_BUFFERED_BYTES, UI_MAX_CLIENTS, UI_RECENT_REQUESTS, UI_VIEW_INTERVAL_MS } from '../constants.js'
import type { RequestEvent } from '../request-events.js'
import type { AgentPort } from './port.js'

/**
 * The dashboard at `/ui`: a static page (packages/agent/ui, plain JS and CSS, no build step, no
 * CDN) and `GET /ui/events`, a server-sent event stream of the agent's `view` (every
 * UI_VIEW_INTERVAL_MS) and of each `request` that ended on this API.
 *
 * Auth: the page and its assets carry no data, so they load without a key (the Host/Origin
 * check still applies); the event stream is guarded like every route. A browser's EventSource
 * cannot send an Authorization header, so `/ui/events` alone also takes the key as `?key=`:
 * the page reads it from its own URL's fragment (`/ui#key=...`, never sent to a server, never
 * in a Referer) and passes it on. The trade-off: the key then travels in that one request line,
 * which the agent does not log.
 */

/** Path of the dashboard's event stream. */
export const UI_EVENTS_PATH = '/ui/events'

/** The dashboard's files: URL path -> file (under packages/agent/ui, or the compiled layout) and type. */
const ASSETS: Record<string, { file: URL, type: string }> = {
  '/ui': { file: new URL('../../ui/index.html', import.meta.url), type: 'text/html; charset=utf-8' },
  '/ui/': { file: new URL('../../ui/index.html', import.meta.url), type: 'text/html; charset=utf-8' },
  '/ui/app.js': { file: new URL('../../ui/app.js', import.meta.url), type: 'text/javascript; charset=utf-8' },
  '/ui/style.css': { file: new URL('../../ui/style.css', import.meta.url), type: 'text/css; charset=utf-8' },
  // the layout is TypeScript shared with the unit tests: the browser gets its build
  '/ui/layout.js': { file: new URL('./ui-layout.js', import.meta.url), type: 'text/javascript; charset=utf-8' }
}

/** Whether `path` is one of the dashboard's static files (no data: no key needed). */
export function isUiAsset (path: string): boolean {
  return Object.hasOwn(ASSETS, path)
}

/** The key a request to the event stream carries in its query (`?key=`), if it is one. */
export function uiQueryKey (req: FastifyRequest): string | undefined {
  if (req.url.split('?')[0] !== UI_EVENTS_PATH) return undefined
  const key = (req.query as Record<string, unknown> | undefined)?.['key']
  return typeof key === 'string' && key !== '' ? key : undefined
}

/** The page's rules: its own scripts, styles and stream only (no inline script, no other origin). */
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

/** Registers the dashboard's routes on `app` (see the module's doc). */
export function registerUi (app: FastifyInstance, port: AgentPort): void {
  // read once per server, at the first request of each file (a file missing, e.g. the layout
  // when running from sources, is an error that names it)
  const cache = new Map<string, Buffer>()
  for (const [path, asset] of Object.entries(ASSETS)) {
    app.get(path, async (_req, reply) => {
      let body = cache.get(path)
      if (body == null) {
        try { body = readFileSync(asset.file) } catch { throw new LlmeshError('INVALID_REQUEST', `the dashboard file ${path} is missing from this install (${asset.file.pathname})`) }
        cache.set(path, body)
      }
      return await reply
        .header('content-type', asset.type)
        .header('cache-control', 'no-cache')
        .header('x-content-type-options', 'nosniff')
        .header('referrer-policy', 'no-referrer')
        .header('content-security-policy', CSP)
        .send(body)
    })
  }

  const streams = new EventStreams(port)
  app.get(UI_EVENTS_PATH, async (_req, reply) => {
    if (streams.size >= UI_MAX_CLIENTS) throw new LlmeshError('BUSY', `this agent serves at most ${UI_MAX_CLIENTS} dashboard streams at once; close one and reload`)
    reply.hijack()
    streams.add(reply.raw)
    return reply
  })
  // open streams never end by themselves: closing the server ends them
  app.addHook('preClose', (done) => { streams.closeAll(); done() })
}

/**
 * The open event streams: one ticker and one request listener for all of them, running only
 * while a stream is open (the request listener stays, to keep the last requests for the next
 * page). A client whose unsent bytes pass UI_MAX_BUFFERED_BYTES is dropped.
 */
class EventStreams {
  private readonly clients = new Set<ServerResponse>()
  private readonly recent: RequestEvent[] = []
  private unsubscribe: (() => void) | undefined
  private viewTimer: NodeJS.Timeout | undefined
  private beatTimer: NodeJS.Timeout | undefined

  constructor (private readonly port: AgentPort) {}

  get size (): number { return this.clients.size }

  add (res: ServerResponse): void {
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      'x-accel-buffering': 'no',
      connection: 'keep-alive'
    })
    this.clients.add(res)
    res.on('close', () => { this.remove(res) })
    res.on('error', () => { this.remove(res) })
    // a dashboard knows the server's pace: reconnect a little after a missed snapshot
    this.send(res, `retry: ${UI_VIEW_INTERVAL_MS * 2}\n\n`)
    this.send(res, frame('view', this.viewJson()))
    for (const e of this.recent) this.send(res, frame('request', JSON.stringify(e)))
    this.unsubscribe ??= this.port.requests.on((e) => { this.onRequest(e) })
    this.viewTimer ??= setInterval(() => { this.broadcast(frame('view', this.viewJson())) }, UI_VIEW_INTERVAL_MS)
    this.beatTimer ??= setInterval(() => { this.broadcast(': beat\n\n') }, UI_HEARTBEAT_MS)
  }

  closeAll (): void {
    for (const res of this.clients) res.end()
    this.clients.clear()
    this.stopTimers()
    this.unsubscribe?.()
    this.unsubscribe = undefined
  }

  private remove (res: ServerResponse): void {
    this.clients.delete(res)
    if (this.clients.size === 0) this.stopTimers()
  }

  private stopTimers (): void {
    clearInterval(this.viewTimer)
    clearInterval(this.beatTimer)
    this.viewTimer = undefined
    this.beatTimer = undefined
  }

  private onRequest (e: RequestEvent): void {
    this.recent.push(e)
    if (this.recent.length > UI_RECENT_REQUESTS) this.recent.shift()
    if (this.clients.size > 0) this.broadcast(frame('request', JSON.stringify(e)))
  }

  private viewJson (): string {
    try {
      return JSON.stringify(this.port.view())
    } catch (err) {
      return JSON.stringify({ error: err instanceof Error ? err.message : String(err) })
    }
  }

  private broadcast (data: string): void {
    for (const res of this.clients) this.send(res, data)
  }

  /** Writes to one client; one that stopped reading is dropped, not buffered for. */
  private send (res: ServerResponse, data: string): void {
    if (res.destroyed || res.writableEnded) return
    if (res.writableLength > UI_MAX_BUFFERED_BYTES) {
      res.destroy()
      this.remove(res)
      return
    }
    res.write(data)
  }
}

/** One server-sent event; `data` is one line of JSON. */
function frame (event: string, data: string): string {
  return `event: ${event}\ndata: ${data}\n\n`
}
