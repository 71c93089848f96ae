import type { AdmissionSnapshot } from './admission.js'

/**
 * Every error llmesh raises on purpose carries a stable `code`. Callers match on the code,
 * never on the message. ONLY APPEND TO THE CATALOGUE: codes cross the wire between peers.
 */
export const ErrorCodes = {
  /** the request body or a parameter is invalid */
  INVALID_REQUEST: { status: 400, type: 'invalid_request_error' },
  /** no host in the mesh serves the requested model */
  MODEL_NOT_FOUND: { status: 404, type: 'invalid_request_error' },
  /** the target host's runners are all busy */
  BUSY: { status: 503, type: 'server_error' },
  /** no runner could be reached to serve the request */
  NO_CAPACITY: { status: 503, type: 'server_error' },
  /** the runner (llama-server, ...) failed or answered with an error */
  RUNNER_FAILED: { status: 502, type: 'server_error' },
  /** forwarding the request to a peer failed */
  PEER_UNREACHABLE: { status: 502, type: 'server_error' },
  /** a peer sent a frame the protocol does not allow */
  PROTOCOL_ERROR: { status: 502, type: 'server_error' },
  /** anything not foreseen */
  INTERNAL: { status: 500, type: 'server_error' },
  /** a runner produced no token for its stall timeout; the stream was aborted */
  STALLED: { status: 504, type: 'server_error' },
  /** the target's admission queue is full: retry after the Retry-After header's seconds */
  QUEUE_FULL: { status: 429, type: 'rate_limit_error' },
  /** the request's deadline (x-llmesh-deadline-ms) passed while it waited for a slot */
  DEADLINE_EXCEEDED: { status: 504, type: 'server_error' },
  /** the runner cannot do what was asked (e.g. embeddings on a runner started without them) */
  NOT_SUPPORTED: { status: 501, type: 'invalid_request_error' },
  /** the API needs a key (`Authorization: Bearer <key>`) and none, or an unknown one, was given */
  UNAUTHORIZED: { status: 401, type: 'invalid_request_error' },
  /** the request's Host or Origin is not one the API answers (a DNS-rebinding or cross-site page) */
  FORBIDDEN: { status: 403, type: 'invalid_request_error' },
  /**
   * the agent's configuration (file, flags, or a data dir another agent holds) is invalid; raised
   * at start and printed by `llmesh up`, never an HTTP answer (hence a plain 500 should it reach one)
   */
  INVALID_CONFIG: { status: 500, type: 'server_error' },
  /**
   * the model fits on no host that has it (weights + KV cache against each host's model memory);
   * the message gives both figures. `loadAnyway` (config) or `x-llmesh-load-anyway: 1` overrides
   */
  INSUFFICIENT_MEMORY: { status: 507, type: 'server_error' }
} as const satisfies Record<string, { status: number, type: string }>

export type ErrorCode = keyof typeof ErrorCodes

export class LlmeshError extends Error {
  override name = 'LlmeshError'
  readonly code: ErrorCode

  constructor (code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
  }

  get status (): number {
    return ErrorCodes[this.code].status
  }

  get type (): string {
    return ErrorCodes[this.code].type
  }
}

/** Turns anything thrown into an LlmeshError, keeping the original as cause. */
export function toLlmeshError (err: unknown, fallback: ErrorCode = 'INTERNAL'): LlmeshError {
  if (err instanceof LlmeshError) return err
  const message = err instanceof Error ? err.message : String(err)
  return new LlmeshError(fallback, message, { cause: err })
}

/**
 * BUSY: every slot of the target is taken and the request may not queue there. Carries the
 * target's admission figures when it knows them, so the router counts that host full until
 * its next heartbeat instead of finding out again with every request.
 */
export class BusyError extends LlmeshError {
  readonly admission: AdmissionSnapshot | undefined

  constructor (message: string, admission?: AdmissionSnapshot) {
    super('BUSY', message)
    this.admission = admission
  }
}

/**
 * QUEUE_FULL: the target's admission queue is full. Carries when to come back, seconds: the HTTP
 * layer answers 429 with it as Retry-After, and a peer's ERROR frame carries it as
 * `retryAfterSec`.
 */
export class QueueFullError extends LlmeshError {
  readonly retryAfterSec: number

  constructor (message: string, retryAfterSec: number) {
    super('QUEUE_FULL', message)
    this.retryAfterSec = retryAfterSec
  }
}
