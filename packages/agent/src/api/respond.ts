/**
 * Writing routed responses to the client: a whole JSON body in one write, a stream chunk by
 * chunk with coalescing, backpressure and a bound on how long a client may read nothing.
 */
import type { OutgoingHttpHeaders, ServerResponse } from 'node:http'
import type { FastifyReply } from 'fastify'
import { LlmeshError, toLlmeshError } from '@llmesh/protocol'
import { Coalescer, drainedWithin, type Sink } from '@llmesh/kit'
// one bound for HTTP clients and for the peers this host serves (`limits.writeStallMs`)
import { WRITE_STALL_MS } from '@llmesh/mesh'
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
 * Streams a body to the client on the raw response, through the stream pipeline's coalescing
 * write (@llmesh/kit): the reply is hijacked and the chunks go to the response as they come, no
 * Readable in between (this runs for every token). The chunks of one turn leave in one socket
 * write (once the turn's promise chains have run), a fast stream's at most every
 * STREAM_COALESCE_MS: one write per token would cost more CPU than the token. A client that reads
 * slowly holds the source back (the client's socket drains first). A failure after the head
 * went out ends the body with `trailer(err)` when the format has a way to say it (an SSE error
 * event, an NDJSON error line), else cuts the connection so the client sees a truncated body. A
 * client that goes away stops the source, which ends the runner's work. A client that reads
 * nothing for `writeStallMs` is treated alike: its stream ends with a STALLED error (the
 * trailer, written to a socket it may read later) and the connection is closed, which frees the
 * runner's slot.
 */
export async function streamTo (reply: FastifyReply, source: AsyncIterable<Uint8Array | string>, trailer?: (e: LlmeshError) => string, writeStallMs = WRITE_STALL_MS): Promise<void> {
  const raw = reply.raw
  reply.hijack()
  raw.writeHead(reply.statusCode, reply.getHeaders() as OutgoingHttpHeaders)
  const it = source[Symbol.asyncIterator]()
  const out = new Coalescer(new ClientSink(raw, writeStallMs), { soon: process.nextTick })
  try {
    for (;;) {
      const n = await it.next()
      if (n.done === true) break
      if (raw.destroyed) return
      const chunk = typeof n.value === 'string' ? Buffer.from(n.value) : n.value
      if (!out.push(chunk) && !await out.drained()) {
        throw new LlmeshError('STALLED', `the client read nothing for ${writeStallMs} ms; the stream was ended`)
      }
    }
  } catch (err) {
    const e = toLlmeshError(err, 'RUNNER_FAILED')
    reply.log.warn({ code: e.code, err: e.message }, 'stream failed after it started')
    if (trailer == null) {
      out.discard()
      raw.destroy()
      return
    }
    // what came before the failure goes first
    out.flush()
    if (!raw.destroyed) raw.write(trailer(e))
    // a client that does not read would keep the socket and what is buffered for it: it goes
    if (e.code === 'STALLED' && raw.writableNeedDrain) {
      raw.end()
      setTimeout(() => { raw.destroy() }, CLIENT_CLOSE_GRACE_MS).unref()
      return
    }
  } finally {
    // what is still gathered goes out now: end() knows nothing of the coalescer's batch
    out.flush()
    void Promise.resolve(it.return?.()).catch(() => {})
  }
  raw.end()
}

/**
 * The stream pipeline's sink on a client's connection: a batch is one write to the response.
 * `drained()` waits on the socket, not on the response: the socket is what holds the bytes a
 * client has not read, and Node 22's response keeps its own "needs drain" flag set after a write
 * made while corked, and then never emits 'drain' when the socket itself never filled: a client
 * that paused would get nothing more. Bounded by the write-stall timeout.
 */
class ClientSink implements Sink {
  constructor (private readonly raw: ServerResponse, private readonly stallMs: number) {}

  write (batch: Uint8Array): boolean {
    // the client may have gone, or the stream ended, while the batch was gathered
    if (this.raw.destroyed || this.raw.writableEnded) return true
    return this.raw.write(batch)
  }

  async drained (): Promise<boolean> {
    const { raw } = this
    const socket = raw.socket
    if (socket == null || !socket.writableNeedDrain) return true
    return await drainedWithin(this.stallMs, (wake) => {
      socket.on('drain', wake)
      raw.on('close', wake)
      return () => {
        socket.off('drain', wake)
        raw.off('close', wake)
      }
    })
  }
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
