import { LlmeshError, type ErrorCode, type Signal } from '@llmesh/protocol'
import type { Failure } from '@llmesh/scheduler'

/** How each error code counts for the scheduler's retry and health logic. */
const FAILURE_OF_CODE: Record<ErrorCode, Failure> = {
  INVALID_REQUEST: 'client-error',
  MODEL_NOT_FOUND: 'client-error',
  NOT_SUPPORTED: 'client-error',
  BUSY: 'busy',
  QUEUE_FULL: 'queue-full',
  DEADLINE_EXCEEDED: 'deadline',
  NO_CAPACITY: 'server-error',
  RUNNER_FAILED: 'server-error',
  INTERNAL: 'server-error',
  PEER_UNREACHABLE: 'connect',
  PROTOCOL_ERROR: 'protocol',
  STALLED: 'stall',
  UNAUTHORIZED: 'client-error',
  FORBIDDEN: 'client-error',
  INVALID_CONFIG: 'server-error',
  // the target could not make room (its own figures are fresher than the view): try the next
  INSUFFICIENT_MEMORY: 'server-error'
}

/** The scheduler's failure kind of an error (an aborted request is 'aborted' whatever it threw). */
export function failureOf (err: unknown, signal?: Signal): Failure {
  if (signal?.aborted === true) return 'aborted'
  if (err instanceof LlmeshError) return FAILURE_OF_CODE[err.code]
  return 'connect'
}

const decoder = new TextDecoder()
const NEEDLE = Buffer.from('predicted_per_second')

/** A number of llama-server's `timings`, by its key. */
const TIMING = (name: string): RegExp => new RegExp(`"${name}"\\s*:\\s*([\\d.eE+-]+)`)
const RATE = TIMING('predicted_per_second')
const CACHE_N = TIMING('cache_n')
const PROMPT_N = TIMING('prompt_n')
const PREDICTED_N = TIMING('predicted_n')
const PROMPT_RATE = TIMING('prompt_per_second')

function figure (re: RegExp, text: string): number | undefined {
  const m = re.exec(text)
  const v = m?.[1] != null ? Number(m[1]) : NaN
  return Number.isFinite(v) && v >= 0 ? v : undefined
}

/**
 * Finds llama-server's `timings` in a response passing by (the last SSE chunk or the JSON
 * body): the decode rate, and what the request's prompt cost (tokens taken from the cache,
 * tokens evaluated, at what rate). Looks for the key in the bytes first and decodes only the
 * chunk that holds it, so the other tokens cost one native search.
 */
export class TokenRateScanner {
  tokensPerSec: number | undefined
  /** prompt tokens found in the KV cache (`cache_n`) */
  cachedTokens: number | undefined
  /** prompt tokens evaluated (`prompt_n`) */
  promptTokens: number | undefined
  /** tokens generated (`predicted_n`) */
  predictedTokens: number | undefined
  /** prompt tokens evaluated per second (`prompt_per_second`) */
  promptPerSec: number | undefined

  scan (chunk: Uint8Array | string): void {
    let text: string
    if (typeof chunk === 'string') {
      if (!chunk.includes('predicted_per_second')) return
      text = chunk
    } else {
      const bytes = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
      if (bytes.indexOf(NEEDLE) < 0) return
      text = decoder.decode(chunk)
    }
    const rate = figure(RATE, text)
    if (rate != null && rate > 0) this.tokensPerSec = rate
    this.cachedTokens = figure(CACHE_N, text) ?? this.cachedTokens
    this.promptTokens = figure(PROMPT_N, text) ?? this.promptTokens
    this.predictedTokens = figure(PREDICTED_N, text) ?? this.predictedTokens
    this.promptPerSec = figure(PROMPT_RATE, text) ?? this.promptPerSec
  }
}
