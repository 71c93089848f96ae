import { backoff, type BackoffInit } from './backoff.js'
import { MAX_ATTEMPTS } from './constants.js'
import { isHostFailure, isRetryable, type Failure } from './outcome.js'
import type { RetryBudget } from './retry-budget.js'

export interface RetryInput {
  failure: Failure
  /** bytes of the response already went to the client: it cannot be replayed */
  streamed: boolean
  /** attempts of this request that ended in a host failure, this one included (>= 1) */
  failedAttempts: number
  /** hosts left that were not tried yet (the next rank() with `exclude`) */
  remaining: number
  budget: RetryBudget
  now: number
  random: () => number
  /** host failures one request may have before it gives up. @default 4 */
  maxAttempts?: number
  backoff?: BackoffInit
}

export type RetryDecision =
  | { retry: true, delayMs: number, reason: string }
  | { retry: false, reason: string }

/**
 * Whether to fail a request over to the next host, and after how long. In order:
 * - never once anything was streamed to the client (a response cannot be spliced);
 * - never for failures another host would repeat (bad request) or that end the request
 *   (client gone, deadline);
 * - never when no untried host is left: the caller then queues (if every host was busy) or
 *   answers the last error;
 * - busy / queue-full: at once, free of the budget and of maxAttempts (the target refused
 *   before doing work; the host list bounds it);
 * - host failures: while failedAttempts < maxAttempts and the retry budget allows, after
 *   `backoff(failedAttempts)` (full jitter). Takes one retry from the budget when it says yes.
 */
export function decideRetry (input: RetryInput): RetryDecision {
  const { failure } = input
  if (input.streamed) return { retry: false, reason: 'response already streaming' }
  if (!isRetryable(failure)) return { retry: false, reason: `${failure} is not retryable` }
  if (input.remaining <= 0) return { retry: false, reason: 'no untried host left' }
  if (!isHostFailure(failure)) return { retry: true, delayMs: 0, reason: `${failure}: next host` }
  const max = input.maxAttempts ?? MAX_ATTEMPTS
  if (input.failedAttempts >= max) return { retry: false, reason: `${input.failedAttempts} failed attempts (max ${max})` }
  if (!input.budget.tryRetry(input.now)) return { retry: false, reason: 'retry budget spent' }
  const delayMs = backoff(input.failedAttempts, input.random, input.backoff)
  return { retry: true, delayMs, reason: `${failure}: retry ${input.failedAttempts} after ${delayMs}ms` }
}
