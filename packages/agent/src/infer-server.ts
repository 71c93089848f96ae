import type { Clock, Logger } from '@llmesh/protocol'
import { Abort } from '@llmesh/kit'
import { serveInfer, type InferLimits, type StreamHandler } from '@llmesh/mesh'
import { DEFAULT_PRIORITY } from '@llmesh/scheduler'
import type { LocalForwarder } from './forwarders.js'
import { assertJsonDepth } from './json-depth.js'

export interface InferServerInit {
  /** this host's runners, behind their admission */
  local: LocalForwarder
  /** what each peer may hold on inbound infer streams (the mesh's) */
  limits: InferLimits
  /** longest a request may wait for a slot here, ms (the agent's queue.deadlineMs) */
  queueDeadlineMs: number
  /** registers a request in flight so that stopping the agent ends it; returns the function that forgets it */
  track: (abort: Abort) => () => void
  logger: Logger
  clock: Pick<Clock, 'now'>
}

/**
 * The serving side of `/llmesh/infer/1`: the handler of every inbound stream, which answers each
 * of a peer's requests from this host's runners. BUSY, QUEUE_FULL (with its Retry-After) and
 * DEADLINE_EXCEEDED go back as ERROR frames, the runner's answer as HEAD and DATA frames.
 */
export function inferServer (init: InferServerInit): StreamHandler {
  const { local, limits, queueDeadlineMs, track, logger, clock } = init
  return async (stream, remotePeer) => {
    const guard = { peer: remotePeer, limits }
    await serveInfer(stream, async (request, reply) => {
      logger.debug({ reqId: request.id, peer: remotePeer, model: request.model }, 'serving forwarded request')
      // a peer's request nested too deep is refused as the client's error before anything recurses
      assertJsonDepth(request.body)
      // the requester going away or this agent stopping ends the work (an error frame then)
      const abort = new Abort()
      const onGone = (): void => { abort.abort(reply.signal.reason) }
      reply.signal.addEventListener('abort', onGone)
      const untrack = track(abort)
      try {
        const res = await local.serve(request.model, request.runnerId, request.path, request.body, {
          id: `${remotePeer.slice(-8)}:${request.id}`,
          priority: request.priority ?? DEFAULT_PRIORITY,
          mayQueue: request.mayQueue === true,
          // a peer may ask for less queueing than this host allows, never for more
          deadline: clock.now() + Math.min(request.deadlineMs ?? queueDeadlineMs, queueDeadlineMs),
          signal: abort.signal,
          loadAnyway: request.loadAnyway === true,
          ...(request.prefixKey != null ? { prefixKey: request.prefixKey } : {})
        })
        await reply.head({ status: res.status, contentType: res.contentType, runnerId: res.runnerId })
        for await (const chunk of res.body) await reply.data(chunk)
      } finally {
        untrack()
        reply.signal.removeEventListener('abort', onGone)
      }
    }, guard)
  }
}
