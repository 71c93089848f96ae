import type { Dispatcher, Pool } from 'undici'
import { LlmeshError, type Signal } from '@llmesh/protocol'
import { PacedReader } from '@llmesh/kit'

/**
 * Socket read buffer of runner connections, bytes. While a paced body holds its parser, Node
 * still reads the socket until this much is buffered; a small one stops it after a few tokens,
 * so what arrives meanwhile waits in the kernel and comes up in one read.
 */
export const RUNNER_SOCKET_READ_BUFFER = 1024

/**
 * undici `connect` options of a runner's Pool: its sockets with the small read buffer (undici
 * hands them to net.connect; the type does not list the stream options net.Socket takes).
 */
export const RUNNER_CONNECT = { keepAlive: true, highWaterMark: RUNNER_SOCKET_READ_BUFFER }

/** A runner's answer with its body read paced. */
export interface PacedResponse {
  status: number
  contentType: string
  body: AsyncIterableIterator<Uint8Array>
}

/**
 * Sends one request to an HTTP runner and hands back its response with the body PACED: the
 * stream pipeline's PacedReader (@llmesh/kit), whose source is undici's dispatch controller. A
 * fast token stream reaches the consumer at most once per `windowMs` (STREAM_COALESCE_MS), the
 * tokens of a window as one chunk, and in between the connection is not read at all.
 *
 * Why: llama-server writes each token as its own chunk, so reading it as it comes wakes the
 * agent, parses HTTP and runs the stall watch, the rate scan and the frame batch once per token,
 * several thousand times a second on a small model, and each wakeup on a shared machine takes
 * its core from the runner. Holding the parser (undici's pause) and a small socket buffer leave
 * the tokens in the kernel until the window ends; one read then takes them all.
 *
 * The first chunk and a stream slower than one chunk per window pass at once, unchanged. The
 * end and errors deliver what is held first. A consumer that stops reading stops the reading of
 * the runner (MAX_UNREAD_BYTES), as a stream's backpressure would.
 */
export async function requestPaced (pool: Pool, opts: { path: string, body: string, signal: Signal, windowMs?: number }): Promise<PacedResponse> {
  const { signal } = opts
  if (signal.aborted) throw signal.reason
  return await new Promise<PacedResponse>((resolve, reject) => {
    let controller: Dispatcher.DispatchController | undefined
    let started = false
    const link = linkAbort(signal)
    const body = new PacedReader({
      windowMs: opts.windowMs,
      onReturn: () => {
        link.release()
        controller?.abort(new LlmeshError('RUNNER_FAILED', 'response reader stopped'))
      }
    })
    const handler: Dispatcher.DispatchHandler = {
      onRequestStart (c) {
        controller = c
        body.attach(c)
        link.start(c)
      },
      onResponseStart (c, statusCode, headers) {
        started = true
        resolve({ status: statusCode, contentType: contentTypeOf(headers), body })
      },
      onResponseData (c, chunk) {
        body.push(chunk)
      },
      onResponseEnd () {
        link.release()
        body.end()
      },
      onResponseError (c, err) {
        link.release()
        body.fail(err)
        if (!started) reject(err)
      }
    }
    postJson(pool, opts.path, opts.body, handler)
  })
}

/** Largest non-streaming runner response read into memory, bytes (embeddings of a big batch are MBs). */
export const MAX_WHOLE_RESPONSE_BYTES = 64 * 1024 * 1024

/** A runner's non-streaming answer, read whole. */
export interface WholeResponse {
  status: number
  contentType: string
  body: Uint8Array
}

/**
 * Sends one request to an HTTP runner and resolves with its whole response once the last byte
 * is in: the way to read a non-streaming answer, which the runner sends in one piece when
 * generation ends anyway.
 *
 * Why not `pool.request()`: its body is a Node Readable, read through an async iterator, and
 * its `signal` option hooks the request into undici's abort plumbing; together they cost about
 * 10 us of CPU per request more than this handler (in-process, 20,000 requests to an instant
 * upstream: 40 against 28.5 us per request, server side included), on every non-streaming call.
 * The caller's signal aborts the request before or during the body; no undici time limits (the
 * runner's own timeout aborts through the signal).
 */
export async function requestWhole (pool: Pool, opts: { path: string, body: string, signal: Signal, limit?: number }): Promise<WholeResponse> {
  const { signal } = opts
  const limit = opts.limit ?? MAX_WHOLE_RESPONSE_BYTES
  if (signal.aborted) throw signal.reason
  return await new Promise<WholeResponse>((resolve, reject) => {
    let status = 0
    let contentType = 'application/json'
    const parts: Uint8Array[] = []
    let size = 0
    const link = linkAbort(signal)
    const handler: Dispatcher.DispatchHandler = {
      onRequestStart (c) { link.start(c) },
      onResponseStart (c, statusCode, headers) {
        status = statusCode
        contentType = contentTypeOf(headers)
      },
      onResponseData (c, chunk) {
        size += chunk.length
        if (size > limit) {
          c.abort(new LlmeshError('RUNNER_FAILED', `runner response larger than ${limit} bytes`))
          return
        }
        parts.push(chunk)
      },
      onResponseEnd () {
        link.release()
        resolve({ status, contentType, body: parts.length === 1 ? parts[0]! : Buffer.concat(parts, size) })
      },
      onResponseError (c, err) {
        link.release()
        reject(err)
      }
    }
    postJson(pool, opts.path, opts.body, handler)
  })
}

/** POSTs a JSON body to a runner through `handler`; no undici time limits (the runner's own timeouts abort). */
function postJson (pool: Pool, path: string, body: string, handler: Dispatcher.DispatchHandler): void {
  pool.dispatch({ path, method: 'POST', headers: { 'content-type': 'application/json' }, body, headersTimeout: 0, bodyTimeout: 0 }, handler)
}

/**
 * Ties a dispatch to the caller's signal: `start` takes the controller undici hands over (and
 * aborts it at once if the signal already fired), the signal aborts it later; `release` lets go
 * of the signal once the answer is settled.
 */
function linkAbort (signal: Signal): { start: (c: Dispatcher.DispatchController) => void, release: () => void } {
  let controller: Dispatcher.DispatchController | undefined
  const onAbort = (): void => { controller?.abort(signal.reason as Error) }
  signal.addEventListener('abort', onAbort, { once: true })
  return {
    start: (c) => {
      controller = c
      if (signal.aborted) c.abort(signal.reason as Error)
    },
    release: () => { signal.removeEventListener('abort', onAbort) }
  }
}

/** A response's content type, JSON when it names none. */
function contentTypeOf (headers: Record<string, string | string[] | undefined>): string {
  const type = headers['content-type']
  return String((Array.isArray(type) ? type[0] : type) ?? 'application/json')
}
