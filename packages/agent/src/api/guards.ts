import type { IncomingMessage } from 'node:http'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { LlmeshError } from '@llmesh/protocol'
import type { ApiKeys } from './port.js'
import { OVERSIZE_DRAIN_BYTES } from '../constants.js'
import { assertJsonDepth } from '../json-depth.js'
import { isLoopbackHost } from '../loopback.js'
import { isUiAsset, uiQueryKey } from './ui.js'

/** Splits a Host header (`name`, `name:port`, `[v6]:port`) into its name and port; undefined when it does not parse. */
export function parseHostHeader (value: string, defaultPort = 80): { host: string, port: number } | undefined {
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+)(?::(\d{1,5}))?$/.exec(value.trim())
  if (m == null) return undefined
  const port = m[2] != null ? Number(m[2]) : defaultPort
  if (port > 65535) return undefined
  return { host: m[1]!.toLowerCase().replace(/^\[(.*)\]$/, '$1'), port }
}

export interface ApiGuardOptions {
  /** the configured API listen address */
  listenHost: string
  /** the port the API listens on (known once it listens) */
  port: () => number | undefined
  /** further Host names a loopback API answers (e.g. a local reverse proxy's) */
  allowedHosts: readonly string[]
  keys: ApiKeys
}

/**
 * Host and Origin check of an API that listens on loopback, against DNS rebinding: a page of
 * evil.example whose name the attacker re-points at 127.0.0.1 reaches the API with
 * `Host: evil.example`, and any page sending a request carries its `Origin`. Only a loopback
 * name or address with the API's port, the configured API host, or an `allowedHosts` name is
 * taken as Host; a request with an Origin that is not a loopback (or allowed) page is refused,
 * `Origin: null` (sandboxed frames, files) included. A request with no Host (HTTP/1.0) or no
 * Origin (curl, SDKs) is not a browser page's and passes.
 */
export function checkHostAndOrigin (req: FastifyRequest, opts: ApiGuardOptions): void {
  const allowed = (host: string): boolean => isLoopbackHost(host) || host === opts.listenHost.toLowerCase() || opts.allowedHosts.some((a) => a.toLowerCase() === host)
  const hostHeader = req.headers.host
  if (hostHeader != null) {
    const h = parseHostHeader(hostHeader)
    if (h == null || !allowed(h.host) || h.port !== opts.port()) {
      throw new LlmeshError('FORBIDDEN', `this API answers only requests to its loopback address (Host '${printable(hostHeader)}' refused; add the name to api.allowedHosts to allow it)`)
    }
  }
  const origin = req.headers.origin
  if (origin != null) {
    let host: string | undefined
    try {
      const u = new URL(origin)
      if (u.protocol === 'http:' || u.protocol === 'https:') host = u.hostname.toLowerCase().replace(/^\[(.*)\]$/, '$1')
    } catch { /* 'null' and other non-URLs: refused */ }
    if (host == null || !allowed(host)) throw new LlmeshError('FORBIDDEN', `requests from web pages other than this host's are refused (Origin '${printable(origin)}')`)
  }
}

/**
 * Bearer key check. A key is needed when the API listens off loopback (the agent does not
 * start there without one), and on loopback as soon as any key exists: whoever made a key
 * meant the API to be closed, and on a shared machine every local user reaches loopback.
 * `/health` stays open (liveness probes carry no key; it tells only that the agent is up and
 * its peer id, which every peer of the mesh knows anyway); so do the dashboard's static files
 * (no data), and its event stream alone also takes the key as `?key=` (see ui.ts: a browser's
 * EventSource cannot send the header).
 */
export async function checkApiKey (req: FastifyRequest, keys: ApiKeys, required: boolean): Promise<void> {
  const path = req.url.split('?')[0] ?? ''
  if (path === '/health' || isUiAsset(path)) return
  const haveKeys = await keys.hasKeys()
  if (!required && !haveKeys) return
  const auth = req.headers.authorization
  const m = auth != null ? /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(auth) : null
  const presented = m?.[1] ?? uiQueryKey(req)
  if (presented == null) throw new LlmeshError('UNAUTHORIZED', 'this API needs a key: send the header Authorization: Bearer <key> (create one with llmesh apikey add)')
  if (!haveKeys) throw new LlmeshError('UNAUTHORIZED', 'this API listens off loopback and no API key exists: create one with llmesh apikey add')
  if (!await keys.verify(presented)) throw new LlmeshError('UNAUTHORIZED', 'unknown or revoked API key')
}

/**
 * Installs the request guards on the API: Host/Origin (loopback only), API key, and the nesting
 * depth of JSON bodies (a client's too-deep body is its 400, not a host's failure).
 */
export function registerApiGuards (app: FastifyInstance, opts: ApiGuardOptions): void {
  const loopback = isLoopbackHost(opts.listenHost)
  app.addHook('onRequest', async (req) => {
    if (loopback) checkHostAndOrigin(req, opts)
    await checkApiKey(req, opts.keys, !loopback)
  })
  app.addHook('preValidation', async (req) => {
    if (req.body != null && typeof req.body === 'object') assertJsonDepth(req.body)
  })
}

/**
 * Reads and throws away the rest of a request body that was refused as too large, up to
 * `limit` bytes, so the client gets to read the 413: a connection closed while the client
 * still sends is reset by the kernel, and the client sees the reset instead of the answer.
 * Resolves when the body ended, the connection closed, or the limit was reached.
 */
export async function drainRequest (raw: IncomingMessage, limit = OVERSIZE_DRAIN_BYTES): Promise<void> {
  if (raw.complete || raw.destroyed) return
  const declared = Number(raw.headers['content-length'])
  if (Number.isFinite(declared) && declared > limit) return
  await new Promise<void>((resolve) => {
    let read = 0
    const done = (): void => {
      raw.off('data', onData)
      raw.off('end', done)
      raw.off('close', done)
      raw.off('error', done)
      resolve()
    }
    const onData = (chunk: Buffer): void => {
      read += chunk.length
      if (read > limit) done()
    }
    raw.on('data', onData)
    raw.once('end', done)
    raw.once('close', done)
    raw.once('error', done)
    raw.resume()
  })
}

/** A header value as it may appear in a message: control characters escaped, at most 64 characters. */
function printable (value: string): string {
  return JSON.stringify(value.slice(0, 64)).slice(1, -1)
}
