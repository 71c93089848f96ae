/**
 * @packageDocumentation
 *
 * `@llmesh/scheduler`: pure policy. Routing strategies, claims, admission and the priority
 * queue, circuit breakers, backoff and the retry budget. No I/O, no timers, no clock reads:
 * every function that depends on time takes `now` (ms), every choice by chance takes
 * `random()`. The agent carries the decisions out.
 *
 * One request through an entry agent (the agent's side, in outline; `now()` is the agent's
 * clock, read there and passed in):
 *
 *     const strategy = parseStrategy(req.headers['x-llmesh-strategy'], config.strategy)  // 400 if unknown
 *     const priority = parsePriority(req.headers['x-llmesh-priority'])                   // 400 if not 0-10
 *     const key = prefixKey(body.messages)
 *     budget.recordRequest(now())
 *     const tried = new Set<string>()
 *     let queue = false, sawBusy = false, failed = 0
 *     for (;;) {
 *       const metrics = health.metrics(targetMetrics([...members, self], selfId), now())  // + overlayReport() of busy answers
 *       const r = rank({ view: { nodes, metrics }, request: { model, priority, prefixKey: key, exclude: tried, strategy },
 *                        selfPeerId: selfId, reachable, inflight: claims.inflight, random: Math.random, now: now(),
 *                        roundRobin: rr, circuits: health.circuits(now()) })
 *       rr = r.roundRobin
 *       if (!r.ok) {
 *         if (!queue && sawBusy) { queue = true; tried.clear(); continue }  // every host answered busy: queue
 *         throw lastError ?? new LlmeshError(r.code, r.message)       // all queues full: 429 + smallest Retry-After
 *       }
 *       const t = r.targets[0]
 *       tried.add(t.peerId)
 *       if (!health.allow(t.peerId, now())) continue                  // half-open, probe already out
 *       const release = claims.claim(t.peerId)                        // gossiped to the other routers
 *       const outcome = await forward(t, { mayQueue: queue || r.allFull, priority, deadline })  // x-llmesh-route: t.reasons.join('; ')
 *       health.report(t.peerId, outcome, now())
 *       if (outcome.ok) return stream (release() when it ends)
 *       release()
 *       if (isHostFailure(outcome.failure)) failed++; if (outcome.failure === 'busy') sawBusy = true
 *       const d = decideRetry({ failure: outcome.failure, streamed, failedAttempts: failed,
 *                               remaining: r.targets.length - 1, budget, now: now(), random: Math.random })
 *       if (!d.retry) throw ...; await sleep(d.delayMs)
 *     }
 *
 * On the target: `Admission` per host (slots = its runners' slots) decides granted / queued /
 * busy / rejected; its `snapshot()` goes into the heartbeat with `Claims.toRecord()`.
 */

export {
  STRATEGIES, DEFAULT_STRATEGY, isStrategy, parseStrategy, parsePriority, clampPriority, type Strategy
} from './strategy.js'
export type {
  TargetMetrics, ClusterView, RouteRequest, CircuitState, RoundRobinState, RankInput, LoadEstimate, RankedTarget,
  SkippedTarget, RankResult
} from './cluster-view.js'
export { rank, type RankTuning } from './rank.js'
export { estimateLoad, isFresh, type LoadInput } from './load.js'
export { performanceScore, priorsOf, speedOf, type PerformanceInit, type PerformanceCandidate, type PerformanceContext, type PerformanceScore, type Priors, type Speed } from './performance.js'
export { prefixKey, PROMPT_PREFIX_CHARS, type ChatMessageLike } from './prefix-key.js'
export { rendezvousOrder } from './rendezvous.js'
export { fnv1a64, unitHash } from './hash.js'
export { Claims, targetMetrics, overlayReport, type ReportingPeer, type AdmissionReport } from './claims.js'
export { PriorityQueue, type PriorityQueueInit, type QueueEntry, type EnqueueResult, type Expired } from './priority-queue.js'
export { Admission, type AdmissionInit, type AdmitRequest, type AdmitResult, type AdmissionEvents } from './admission.js'
export { CircuitBreaker, CircuitBreakers, type CircuitBreakerInit } from './circuit-breaker.js'
export { backoff, backoffCap, type BackoffInit } from './backoff.js'
export { RetryBudget, type RetryBudgetInit } from './retry-budget.js'
export { decideRetry, type RetryInput, type RetryDecision } from './retry.js'
export { FAILURES, isHostFailure, isRetryable, type Failure, type Outcome } from './outcome.js'
export { Ewma, PeerStats, mergeObserved, type PeerStatsInit, type ObservedStats } from './ewma.js'
export { PeerHealth, type PeerHealthInit } from './health.js'
export * from './constants.js'
