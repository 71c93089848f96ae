/**
 * @packageDocumentation
 *
 * `@llmesh/scheduler`: pure policy. Routing strategies, claims, admission and the priority
 * queue, circuit breakers, backoff and the retry budget, and the dispatch of one request. No
 * I/O, no timers, no clock reads: every function that depends on time takes `now` (ms), every
 * choice by chance takes `random()`. The agent carries the decisions out.
 *
 * One request through an entry agent: the agent's HTTP layer reads strategy and priority from
 * the request headers (400 when invalid) and the prefix key (`prefixKey`), then
 * runs a `Dispatch` (dispatch/): `start(request, view)` and `next(outcome, view)` answer try a
 * target / wait / fail, and done once a target took the request; the agent forwards, sleeps or
 * throws, and takes a fresh view of the mesh for each round. The rules (failover, queueing when
 * every host is busy, waiting at the first choice, retries) are the machine's; the router's
 * memory across requests (claims, health, retry budget) is its `Dispatcher`'s.
 *
 * Models on demand (placement/): `planCold` names the one host that starts a model no host
 * runs (rank() calls it), `chooseEvictions` the runners a host stops to make room,
 * `decideReplicas` / `scaleDown` / `idleUnload` follow demand; each agent carries out what
 * names itself.
 *
 * On the target: `Admission` per host (slots = its runners' slots) decides granted / queued /
 * busy / rejected; its `snapshot()` goes into the heartbeat with `Claims.toRecord()`.
 */

export {
  STRATEGIES, DEFAULT_STRATEGY, isStrategy, clampPriority, type Strategy
} from './strategy.js'
export type {
  TargetMetrics, ClusterView, RouteRequest, CircuitState, RoundRobinState, RankInput, LoadEstimate, RankedTarget,
  SkippedTarget, RankResult
} from './cluster-view.js'
export { rank, type RankTuning } from './rank.js'
export { estimateLoad, isFresh, type LoadInput } from './load.js'
export { performanceScore, priorsOf, speedOf, type PerformanceInit, type PerformanceCandidate, type PerformanceContext, type PerformanceScore, type Priors, type Speed } from './performance.js'
export { prefixKey, estimatePromptTokens, CHARS_PER_TOKEN, PROMPT_PREFIX_CHARS, type ChatMessageLike } from './prefix-key.js'
export { rendezvousOrder } from './rendezvous.js'
export { fnv1a64, unitHash } from './hash.js'
export { Claims, targetMetrics, overlayReport, type ReportingPeer } from './claims.js'
export { PriorityQueue, type PriorityQueueInit, type QueueEntry, type EnqueueResult, type Expired } from './priority-queue.js'
export { Admission, type AdmissionInit, type AdmitRequest, type AdmitResult, type AdmissionEvents } from './admission.js'
export { CircuitBreaker, CircuitBreakers, type CircuitBreakerInit } from './circuit-breaker.js'
export { backoff, backoffCap, type BackoffInit } from './backoff.js'
export { RetryBudget, type RetryBudgetInit } from './retry-budget.js'
export { decideRetry, type RetryInput, type RetryDecision } from './retry.js'
export { FAILURES, isHostFailure, isRetryable, type Failure, type Outcome } from './outcome.js'
export { Ewma, PeerStats, mergeObserved, type PeerStatsInit, type ObservedStats } from './ewma.js'
export { PeerHealth, type PeerHealthInit } from './health.js'
export {
  Dispatch, Dispatcher, type DispatcherInit, type DispatchSpec, type DispatchView, type DispatchAction, type TryAction,
  type WaitAction, type FailAction, type DoneAction, type DispatchOutcome, type Served, type AttemptFailure, type Waited
} from './dispatch/index.js'
export * from './constants.js'
export { StrategyConfigSchema, QueueConfigSchema, type QueueConfig } from './config.js'
export { PlacementConfigSchema, PinConfigSchema, type PlacementConfig } from './config.js'
export * from './placement/index.js'
