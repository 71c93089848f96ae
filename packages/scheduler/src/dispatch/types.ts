import type { AdmissionSnapshot, EffectivePin, ErrorCode, NodeRecord, PlacementsEntry } from '@llmesh/protocol'
import type { ReportingPeer } from '../claims.js'
import type { RankedTarget, RouteRequest } from '../cluster-view.js'
import type { Failure } from '../outcome.js'

/**
 * Contracts of the dispatch machine: what it is given and what it answers, all plain data
 * (records, arrays, one Set: structured-clone-able, no functions, no live objects), so that a
 * routing policy given by a user can later take the same view and give the same kind of answer.
 */

/** A request as the machine routes it: what `rank()` ranks on. The hosts to exclude are the machine's. */
export type DispatchSpec = Omit<RouteRequest, 'exclude'>

/** One snapshot of what the router knows of the mesh, taken by its executor for each round. */
export interface DispatchView {
  /** clock time of the snapshot, ms: the clock of `lastHeardAt`, and of every decision made on it */
  now: number
  selfPeerId: string
  /** every node record of the cluster document, own included */
  nodes: readonly NodeRecord[]
  /**
   * every peer membership knows, and the own host with its figures as of now (lastHeardAt =
   * now); the own host's claims are not needed: the router's own come from its `Claims`
   */
  peers: readonly ReportingPeer[]
  /** peers a request may be sent to now (connected, alive or suspect); the own host needs no entry */
  reachable: ReadonlySet<string>
  /** the cluster document's placements section, per owner host (see ClusterView.placements). @default none */
  placements?: ReadonlyMap<string, PlacementsEntry>
  /** the pins in effect (`effectivePins()`). @default none */
  pins?: readonly EffectivePin[]
}

/**
 * Send the request to `target` (queueing there allowed when `mayQueue`), then tell the machine
 * how it went: `{ kind: 'served' }` once the first chunk is in, else a `failed` outcome.
 */
export interface TryAction {
  kind: 'try'
  target: RankedTarget
  mayQueue: boolean
}

/** Wait `ms` (a host failure's backoff), then tell the machine `{ kind: 'waited' }`. */
export interface WaitAction {
  kind: 'wait'
  ms: number
}

/**
 * The request fails with this error; QUEUE_FULL carries the smallest Retry-After of the full
 * queues met. A request whose client went away fails with the client's own reason instead.
 */
export interface FailAction {
  kind: 'fail'
  code: ErrorCode
  message: string
  retryAfterSec?: number
}

/** The last target took the request. */
export interface DoneAction {
  kind: 'done'
  /** why that target, and what happened to the ones tried before: the x-llmesh-route header */
  reasons: string[]
  /** rounds this request took, this one included */
  attempts: number
}

export type DispatchAction = TryAction | WaitAction | FailAction

/** The target of the last `try` sent its first chunk: the request is committed to it. */
export interface Served {
  kind: 'served'
}

/** The target of the last `try` failed before anything reached the client. */
export interface AttemptFailure {
  kind: 'failed'
  failure: Failure
  code: ErrorCode
  message: string
  /** with QUEUE_FULL: the target's Retry-After, seconds */
  retryAfterSec?: number
  /** with BUSY: the target's admission figures, when it sent them */
  admission?: AdmissionSnapshot
}

/** The `wait` is over. */
export interface Waited {
  kind: 'waited'
}

export type DispatchOutcome = Served | AttemptFailure | Waited
