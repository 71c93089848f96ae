/**
 * Writing routed responses to the client: a whole JSON body in one write, a stream chunk by
 * chunk with coalescing, backpressure and a bound on how long a client may read nothing.
 */
import type { OutgoingHttpHeaders } from 'node:http'
import type { FastifyReply } from 'fastify'
import { LlmeshError, STREAM_COALESCE_MS, toLlmeshError } from '@llmesh/protocol'
import { WRITE_STALL_MS } from '../constants.js'
import type { RoutedResponse } from '../router.js'
import { openAiError } from './errors.js'
import { routeHeaders } from './headers.js'

/** A client that read nothing for writeStallMs is disconnected this long after its stream ended. @default 1000 ms */
const CLIENT_CLOSE_GRACE_MS = 1000

/** Largest routed body read whole (a non-streaming answer). @default 64 MiB */
const MAX_WHOLE_BODY_BYTES = 64 * 1024 * 1024

/** The last event of an SSE stream that broke after it started. */
const sseErrorTrailer = (e: LlmeshError): string => `data: ${JSON.stringify(openAiError(e))}\n\n`

/**
 * Sends a routed response to the client (OpenAI API). A whole JSON body (a non-streaming call)
 * is read first and sent in one write with its length, so a runner failing midway still gets
 * the client a proper error status; a stream goes out chunk by chunk as the runner produced it,
 * and if it breaks after bytes went out an SSE client gets a final error event instead of a
 * silent hang.
 */
export async function sendRouted (reply: FastifyReply, res: RoutedResponse, writeStallMs?: number): Promise<FastifyReply> {
  void routeHeaders(reply.status(res.status), res).header('content-type', res.contentType)
  if (res.contentType.includes('application/json')) return await reply.send(await readBytes(res.body))
  const sse = res.contentType.includes('text/event-stream')
  await streamTo(reply.header('cache-control', 'no-cache'), res.body, sse ? sseErrorTrailer : undefined, writeStallMs)
  return reply
}

/**
 * Streams a body to the client on the raw response: the reply is hijacked and each chunk is
 * written as it comes, no Readable in between (this runs for every token), waiting for 'drain'
 * when the client reads slowly. A failure after the head went out ends the body with
 * `trailer(err)` when the format has a way to say it (an SSE error event, an NDJSON error
 * line), else cuts the connection so the client sees a truncated body. A client that goes away
 * stops the source, which ends the runner's work. A client that reads nothing for
 * `writeStallMs` is treated alike: its stream ends with a STALLED error (the trailer, written
 * to a socket it may read later) and the connection is closed, which frees the runner's slot.
 */
export async function streamTo (reply: FastifyReply, source: AsyncIterable<Uint8Array | string>, trailer?: (e: LlmeshError) => string, writeStallMs = WRITE_STALL_MS): Promise<void> {
  const raw = reply.raw
  reply.hijack()
  raw.writeHead(reply.statusCode, reply.getHeaders() as OutgoingHttpHeaders)
  const it = source[Symbol.asyncIterator]()
  // chunks that arrive in the same turn of the event loop leave in one socket write (corked
  // until the turn's microtasks are done), and a fast stream's chunks leave at most every
  // STREAM_COALESCE_MS: one write per token would cost more CPU than the token
  let corked = false
  let lastFlushAt = -Infinity
  let timer: NodeJS.Timeout | undefined
  const uncork = (): void => {
    if (!corked) return
    corked = false
    timer = undefined
    lastFlushAt = performance.now()
    raw.uncork()
  }
  try {
    for (;;) {
      const n = await it.next()
      if (n.done === true) break
      if (raw.destroyed) return
      if (!corked) {
        corked = true
        raw.cork()
        const wait = lastFlushAt + STREAM_COALESCE_MS - performance.now()
        if (wait > 0) timer = setTimeout(uncork, wait)
        else process.nextTick(uncork)
      }
      if (!raw.write(n.value) && !await drained(raw, writeStallMs)) {
        throw new LlmeshError('STALLED', `the client read nothing for ${writeStallMs} ms; the stream was ended`)
      }
    }
  } catch (err) {
    const e = toLlmeshError(err, 'RUNNER_FAILED')
    reply.log.warn({ code: e.code, err: e.message }, 'stream failed after it started')
    if (trailer == null) {
      raw.destroy()
      return
    }
    if (!raw.destroyed) raw.write(trailer(e))
    // a client that does not read would keep the socket and what is buffered for it: it goes
    if (e.code === 'STALLED' && raw.writableNeedDrain) {
      raw.end()
      setTimeout(() => { raw.destroy() }, CLIENT_CLOSE_GRACE_MS).unref()
      return
    }
  } finally {
    clearTimeout(timer)
    // what is still corked goes out now: Node 22's response buffers corked chunks itself and
    // end() does not flush them (the last tokens and `data: [DONE]` were lost there)
    if (corked) uncork()
    void Promise.resolve(it.return?.()).catch(() => {})
  }
  raw.end()
}

/**
 * Resolves true when a slow client has read what was written, or went away; false when it read
 * nothing for `stallMs` (a timer only while the client holds the socket full: the rare path).
 * The socket, not the response, is waited on: it is what holds the bytes a client has not read,
 * and Node 22's response keeps its own "needs drain" flag set after a write made while corked
 * and then never emits 'drain' when the socket itself never filled (measured: a client that
 * paused for 1.5 s got 130 KB of a 48 MB stream, on Node 20 all of it).
 */
async function drained (raw: FastifyReply['raw'], stallMs: number): Promise<boolean> {
  const socket = raw.socket
  if (socket == null || !socket.writableNeedDrain) return true
  return await new Promise<boolean>((resolve) => {
    const done = (ok: boolean) => (): void => {
      clearTimeout(timer)
      socket.off('drain', onDrain)
      raw.off('close', onDrain)
      resolve(ok)
    }
    const onDrain = done(true)
    const timer = setTimeout(done(false), stallMs)
    socket.on('drain', onDrain)
    raw.on('close', onDrain)
  })
}

/** Reads a whole routed body into one buffer. */
export async function readBytes (body: AsyncIterable<Uint8Array>, limit = MAX_WHOLE_BODY_BYTES): Promise<Buffer> {
  const parts: Uint8Array[] = []
  let size = 0
  for await (const chunk of body) {
    size += chunk.byteLength
    if (size > limit) throw new LlmeshError('RUNNER_FAILED', `runner response larger than ${limit} bytes`)
    parts.push(chunk)
  }
  return parts.length === 1 && Buffer.isBuffer(parts[0]) ? parts[0] : Buffer.concat(parts, size)
}

/** Reads a whole (small) routed body as text. */
export async function readText (body: AsyncIterable<Uint8Array>, limit = MAX_WHOLE_BODY_BYTES): Promise<string> {
  return (await readBytes(body, limit)).toString('utf8')
}
