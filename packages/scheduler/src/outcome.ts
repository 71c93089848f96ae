/**
 * How a forwarded request ended, as the router saw it. ONLY APPEND TO THIS LIST.
 * - connect: the host could not be reached (dial, stream open, reset before the head)
 * - server-error: the runner or target answered 5xx (not BUSY)
 * - stall: no first token (or no progress) within the stall timeout
 * - protocol: the target sent frames the protocol does not allow
 * - busy: the target had no free slot (and the request did not queue); healthy, but full
 * - queue-full: the target's queue was full (429)
 * - deadline: the request's own deadline passed while it waited
 * - client-error: the request itself is bad (4xx): another host would say the same
 * - aborted: the client went away
 */
export const FAILURES = ['connect', 'server-error', 'stall', 'protocol', 'busy', 'queue-full', 'deadline', 'client-error', 'aborted'] as const
export type Failure = typeof FAILURES[number]

export type Outcome =
  | {
    ok: true
    /** ms from dispatch to the first token (or the whole body, non-streaming) */
    firstTokenMs?: number
    /** generated tokens / decode seconds (llama-server's `timings.predicted_per_second`) */
    tokensPerSec?: number
  }
  | { ok: false, failure: Failure }

/** Failures that say the host is unwell: they count against its circuit and success rate. */
export function isHostFailure (failure: Failure): boolean {
  return failure === 'connect' || failure === 'server-error' || failure === 'stall' || failure === 'protocol'
}

/**
 * Failures another host may not repeat, so they are worth a retry elsewhere (if nothing was
 * streamed to the client yet). busy and queue-full go on at once and free of the retry budget:
 * the target refused before doing any work.
 */
export function isRetryable (failure: Failure): boolean {
  return isHostFailure(failure) || failure === 'busy' || failure === 'queue-full'
}
