import { INFER_PROTOCOL, type Clock, type InferRequest, type Logger, type Signal } from '@llmesh/protocol'
import type { Stream } from '@libp2p/interface'
import { MAX_INFER_STREAMS } from './constants.js'
import { InferLimits, InferStreams, type InferLimitsInit, type InferResponse, type InferTimeouts } from './infer-stream.js'
import type { Transport } from './transport.js'

/** Handler for one inbound stream of a protocol the agent serves (e.g. `/llmesh/infer/1`). */
export type StreamHandler = (stream: Stream, remotePeer: string) => Promise<void>

/**
 * The peer-to-peer request streams (`/llmesh/infer/1`) over the transport: outbound requests
 * on a pool of idle streams per peer (infer-stream.ts' InferStreams, frames and pacing there),
 * inbound streams to the agent's handler, and the per-peer limits of inbound streams. Nothing
 * is added per request: a request goes straight to the pool.
 */
export class InferChannel {
  readonly limits: InferLimits
  private readonly pool: InferStreams

  // the clock is taken for symmetry with the other parts: infer-stream.ts keeps its own timers
  constructor (private readonly transport: Transport, _clock: Clock, private readonly log: Logger, limits?: InferLimitsInit) {
    this.limits = new InferLimits(limits)
    this.pool = new InferStreams(async (peer, signal) => await transport.openStream(peer, INFER_PROTOCOL, signal))
  }

  /** Sends a request to a peer and returns its answer (see requestInfer); the pool's own promise, no extra hop. */
  request (peer: string, request: InferRequest, signal?: Signal, timeouts?: InferTimeouts): Promise<InferResponse> {
    return this.pool.request(peer, request, signal, timeouts)
  }

  /** Serves a protocol on inbound streams. Errors in the handler abort that stream only. */
  async handle (protocol: string, handler: StreamHandler): Promise<void> {
    await this.transport.handleStream(protocol, (stream, remote) => {
      handler(stream, remote).catch((err: unknown) => {
        this.log.warn({ err, peer: remote, protocol }, 'stream handler failed')
        stream.abort(err instanceof Error ? err : new Error(String(err)))
      })
    }, { maxStreams: MAX_INFER_STREAMS })
  }

  close (): void {
    this.pool.close()
  }
}
