/**
 * The `x-llmesh-*` headers, the one place they are read and written. A request may name its
 * routing strategy, priority and queueing deadline (each malformed value is INVALID_REQUEST, a
 * 400); every routed response says which peer and runner served it and why.
 */
import type { IncomingHttpHeaders } from 'node:http'
import type { FastifyReply } from 'fastify'
import { HEADER_DEADLINE, HEADER_LOAD_ANYWAY, HEADER_NODE, HEADER_PRIORITY, HEADER_ROUTE, HEADER_RUNNER, HEADER_STRATEGY, LlmeshError } from '@llmesh/protocol'
import { DEFAULT_PRIORITY, MAX_PRIORITY, MIN_PRIORITY, STRATEGIES, isStrategy, type Strategy } from '@llmesh/scheduler'
import type { RoutedResponse } from '../router.js'

/** Longest deadline a client may ask for with x-llmesh-deadline-ms. @default 24 h */
export const MAX_DEADLINE_MS = 24 * 3600 * 1000
/** Longest peer or runner id put in a response header; longer ones are cut. @default 256 chars */
const MAX_ID_HEADER_CHARS = 256
/** Longest x-llmesh-route header. @default 2048 chars */
const MAX_ROUTE_HEADER_CHARS = 2048

/** A header's one value (undefined when absent); a header given several times is refused. */
function single (value: string | string[] | undefined, what: string): string | undefined {
  if (!Array.isArray(value)) return value
  if (value.length > 1) throw new LlmeshError('INVALID_REQUEST', `${what} given more than once`)
  return value[0]
}

/**
 * `x-llmesh-strategy`: the routing strategy. Absent or empty gives `fallback`; case and
 * surrounding blanks are ignored; an unknown name is refused with the valid ones.
 */
export function requestStrategy (headers: IncomingHttpHeaders, fallback: Strategy): Strategy {
  const value = single(headers[HEADER_STRATEGY], HEADER_STRATEGY)
  if (value == null) return fallback
  const name = value.trim().toLowerCase()
  if (name === '') return fallback
  if (isStrategy(name)) return name
  throw new LlmeshError('INVALID_REQUEST', `unknown routing strategy '${value.slice(0, 64)}'; valid strategies: ${STRATEGIES.join(', ')}`)
}

/** `x-llmesh-priority`: an integer MIN_PRIORITY-MAX_PRIORITY, higher is served first; absent or empty gives DEFAULT_PRIORITY. */
export function requestPriority (headers: IncomingHttpHeaders): number {
  const value = single(headers[HEADER_PRIORITY], 'priority')
  if (value == null) return DEFAULT_PRIORITY
  const text = value.trim()
  if (text === '') return DEFAULT_PRIORITY
  const n = Number(text)
  if (!Number.isInteger(n) || n < MIN_PRIORITY || n > MAX_PRIORITY) {
    throw new LlmeshError('INVALID_REQUEST', `priority must be an integer from ${MIN_PRIORITY} to ${MAX_PRIORITY}, got '${text.slice(0, 32)}'`)
  }
  return n
}

/** `x-llmesh-deadline-ms`: how long the request may wait for a slot, 1 ms to MAX_DEADLINE_MS; absent or empty gives `fallback`. */
export function requestDeadlineMs (headers: IncomingHttpHeaders, fallback: number): number {
  const value = single(headers[HEADER_DEADLINE], HEADER_DEADLINE)
  if (value == null || value.trim() === '') return fallback
  const n = Number(value.trim())
  if (!Number.isInteger(n) || n <= 0 || n > MAX_DEADLINE_MS) {
    throw new LlmeshError('INVALID_REQUEST', `${HEADER_DEADLINE} must be a whole number of ms from 1 to ${MAX_DEADLINE_MS}, got '${value.slice(0, 32)}'`)
  }
  return n
}

/**
 * `x-llmesh-load-anyway`: start the model even on a host whose model memory it does not fit
 * (`1`/`true`, `0`/`false`; case and blanks ignored); absent or empty gives `fallback` (the
 * config's `placement.loadAnyway`).
 */
export function requestLoadAnyway (headers: IncomingHttpHeaders, fallback: boolean): boolean {
  const value = single(headers[HEADER_LOAD_ANYWAY], HEADER_LOAD_ANYWAY)
  if (value == null) return fallback
  const v = value.trim().toLowerCase()
  if (v === '') return fallback
  if (v === '1' || v === 'true') return true
  if (v === '0' || v === 'false') return false
  throw new LlmeshError('INVALID_REQUEST', `${HEADER_LOAD_ANYWAY} must be 1, true, 0 or false, got '${value.slice(0, 32)}'`)
}

/** Sets the route headers every routed response carries: `x-llmesh-node`, `-runner`, `-route`. */
export function routeHeaders (reply: FastifyReply, res: RoutedResponse): FastifyReply {
  return reply
    .header(HEADER_NODE, headerValue(res.target.peerId, MAX_ID_HEADER_CHARS))
    .header(HEADER_RUNNER, headerValue(res.target.runnerId, MAX_ID_HEADER_CHARS))
    .header(HEADER_ROUTE, headerValue(res.target.reasons.join('; '), MAX_ROUTE_HEADER_CHARS))
}

/**
 * A string that came (in part) from a peer, made safe as a response header value: printable
 * ASCII stays, every other character (CR, LF and other controls, non-latin1, lone surrogates)
 * is percent-encoded as its UTF-8 bytes, so it can neither split the header nor make Node
 * throw; at most `max` characters of the input are used.
 */
export function headerValue (value: string, max: number): string {
  const s = value.length > max ? value.slice(0, max) : value
  if (/^[\x20-\x24\x26-\x7e]*$/.test(s)) return s
  let out = ''
  for (const ch of s) {
    const c = ch.codePointAt(0)!
    if (c >= 0x20 && c <= 0x7e && c !== 0x25) out += ch
    else for (const b of Buffer.from(ch, 'utf8')) out += `%${b.toString(16).toUpperCase().padStart(2, '0')}`
  }
  return out
}
