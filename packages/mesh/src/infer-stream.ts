import { lpStream, type LengthPrefixedStream } from '@libp2p/utils'
import type { Stream } from '@libp2p/interface'
import {
  FrameKind, InferErrorSchema, InferHeadSchema, InferRequestSchema, LlmeshError, MAX_INFER_REQUEST_BYTES,
  decodeFrame, encodeFrame, parseFramePayload, toLlmeshError,
  type InferHead, type InferRequest
} from '@llmesh/protocol'

/** Largest response frame accepted; runners' chunks are far smaller. */
const MAX_RESPONSE_FRAME_BYTES = 4 * 1024 * 1024

export interface InferResponse {
  head: InferHead
  /** response bytes as the runner produced them; throws an LlmeshError if the peer fails midway */
  body: AsyncIterable<Uint8Array>
}

/**
 * Requester side of `/llmesh/infer/1`: sends the request, waits for HEAD (or ERROR, thrown as
 * the peer's LlmeshError), and returns the body as an async iterable of DATA payloads.
 */
export async function requestInfer (stream: Stream, request: InferRequest, signal?: AbortSignal): Promise<InferResponse> {
  const lp = lpStream(stream, { maxDataLength: MAX_RESPONSE_FRAME_BYTES })
  const opts = signal != null ? { signal } : {}
  await lp.write(encodeFrame(FrameKind.REQUEST, request), opts)
  const first = await readFrame(lp, signal)
  if (first.kind === FrameKind.ERROR) throw peerError(first.payload)
  if (first.kind !== FrameKind.HEAD) throw new LlmeshError('PROTOCOL_ERROR', `peer answered with frame kind ${first.kind} instead of a head`)
  const head = parseFramePayload(InferHeadSchema, first.payload)
  if (head == null) throw new LlmeshError('PROTOCOL_ERROR', 'peer sent a malformed response head')

  async function * body (): AsyncGenerator<Uint8Array> {
    try {
      while (true) {
        const frame = await readFrame(lp, signal)
        if (frame.kind === FrameKind.DATA) yield frame.payload
        else if (frame.kind === FrameKind.END) return
        else if (frame.kind === FrameKind.ERROR) throw peerError(frame.payload)
        else throw new LlmeshError('PROTOCOL_ERROR', `unexpected frame kind ${frame.kind} in a response body`)
      }
    } finally {
      // normal end: close our side; early exit by the consumer (client went away): abort, so the peer stops its runner
      if (stream.status === 'open') stream.abort(new Error('requester stopped reading'))
    }
  }
  return { head, body: body() }
}

export interface InferReply {
  head (head: InferHead): Promise<void>
  data (chunk: Uint8Array): Promise<void>
  end (): Promise<void>
  error (err: unknown): Promise<void>
  /** aborted when the requester goes away: stop the runner's work */
  signal: AbortSignal
}

/**
 * Server side of `/llmesh/infer/1`: reads and validates the request, then lets `onRequest`
 * answer through `reply`. A malformed request is answered with an ERROR frame, never a crash.
 */
export async function serveInfer (stream: Stream, onRequest: (request: InferRequest, reply: InferReply) => Promise<void>): Promise<void> {
  const lp = lpStream(stream, { maxDataLength: MAX_INFER_REQUEST_BYTES })
  const controller = new AbortController()
  const onClose = (): void => { controller.abort(new Error('requester closed the stream')) }
  stream.addEventListener('close', onClose)
  let finished = false
  const reply: InferReply = {
    signal: controller.signal,
    head: async (head) => { await lp.write(encodeFrame(FrameKind.HEAD, head)) },
    data: async (chunk) => { await lp.write(encodeFrame(FrameKind.DATA, chunk)) },
    end: async () => {
      if (finished) return
      finished = true
      await lp.write(encodeFrame(FrameKind.END))
      await stream.close()
    },
    error: async (err) => {
      if (finished) return
      finished = true
      const e = toLlmeshError(err)
      await lp.write(encodeFrame(FrameKind.ERROR, { code: e.code, message: e.message }))
      await stream.close()
    }
  }
  try {
    let first
    try {
      first = await readFrame(lp, controller.signal)
    } catch (err) {
      await reply.error(new LlmeshError('INVALID_REQUEST', `cannot read the request: ${(err as Error).message}`))
      return
    }
    const request = first.kind === FrameKind.REQUEST ? parseFramePayload(InferRequestSchema, first.payload) : undefined
    if (request == null) {
      await reply.error(new LlmeshError('INVALID_REQUEST', 'malformed inference request'))
      return
    }
    await onRequest(request, reply)
    await reply.end()
  } catch (err) {
    if (stream.status === 'open') await reply.error(err).catch(() => {})
  } finally {
    stream.removeEventListener('close', onClose)
  }
}

async function readFrame (lp: LengthPrefixedStream, signal?: AbortSignal): Promise<{ kind: number, payload: Uint8Array }> {
  try {
    const buf = await lp.read(signal != null ? { signal } : {})
    return decodeFrame(buf.subarray())
  } catch (err) {
    throw new LlmeshError('PEER_UNREACHABLE', `peer stream ended: ${(err as Error).message}`, { cause: err })
  }
}

function peerError (payload: Uint8Array): LlmeshError {
  const e = parseFramePayload(InferErrorSchema, payload)
  return e == null ? new LlmeshError('PROTOCOL_ERROR', 'peer sent a malformed error') : new LlmeshError(e.code, e.message)
}
