import type { EffectivePin, NodeRecord, PeerMetrics, Placement } from '@llmesh/protocol'
import type { Abort } from '@llmesh/kit'
import type { RunnerDescription } from '@llmesh/runners'
import type { DispatchRequest, RoutedResponse } from '../router.js'
import type { AdmissionCounters } from '../serving.js'
import type { RequestEvent } from '../request-events.js'

/**
 * What the HTTP API needs from the agent, and nothing more: the API's routes see the agent only
 * through this port (the Agent implements it), so the API can be built and tested without one.
 */
export interface AgentPort {
  /** this agent's peer id (`/health`) */
  readonly peerId: string
  /**
   * Routes one request through the mesh; resolves with the target's response once its first
   * chunk is in.
   */
  infer: (req: DispatchRequest) => Promise<RoutedResponse>
  /**
   * Registers a request in flight, so that stopping the agent can end it; returns the function
   * that forgets it (called when the request is done).
   */
  trackRequest: (abort: Abort) => () => void
  /** the converged view of the mesh (`/mesh/view`, the models the APIs list) */
  view: () => MeshView
  /** counters of the mesh layer (`/mesh/stats`) */
  meshStats: () => Record<string, unknown>
  /** this host's runners with their process details (`/admin/runners`) */
  localRunners: () => RunnerDescription[]
  /** admission counters per local runner (`/admin/runners`, `/admin/admission`) */
  admission: () => AdmissionCounters[]
  /** the API keys a request's bearer token is checked against */
  readonly apiKeys: ApiKeys
  /**
   * Pins (`pinned`) or unpins `model` on `host` (a peer id or a node name of the view; anywhere
   * when absent); answers the pins in effect. INVALID_REQUEST for a host the view does not know.
   */
  setPin: (model: string, host: string | undefined, pinned: boolean) => EffectivePin[]
  /** the pins in effect over the whole mesh */
  pins: () => EffectivePin[]
  /** this host's placements with the steps of their last start (`/admin/placements`) */
  localPlacements: () => LocalPlacement[]
  /** every request taken on this API, once it ended (the dashboard's stream, the metrics) */
  readonly requests: { on: (fn: (e: RequestEvent) => void) => () => void }
}

/**
 * When each step of this host's last start of a model happened, clock ms (local detail for
 * `GET /admin/placements` and the cold-start benchmark; never published).
 */
export interface StartTimings {
  /** the start was asked for (a request, a pin, a replica) */
  askedAt: number
  /** room was made (evictions done) and the runner asked for */
  plannedAt?: number
  /** split models: every member's rpc-server accepts connections */
  membersReadyAt?: number
  /** the runner exists (its process is being spawned) */
  spawnedAt?: number
  /** the runner answers and loads the weights */
  loadingAt?: number
  readyAt?: number
}

/** A placement of this host, with its local detail. */
export interface LocalPlacement extends Placement {
  timings?: StartTimings
  /** a split coordinated here: the bytes its tunnels carried to and from each member */
  tunnels?: Array<{ peerId: string, bytesSent: number, bytesReceived: number }>
}


/** The API keys as the guard asks them (see ApiKeyStore). */
export interface ApiKeys {
  /** whether any key exists */
  hasKeys: () => Promise<boolean>
  /** whether `presented` is one of the keys */
  verify: (presented: string) => Promise<boolean>
}

/** One node of the view: its record, with this agent's link to it and its membership. */
export interface ViewNode extends NodeRecord {
  self: boolean
  connected: boolean
  /** membership state as this agent sees it; 'unknown' before the first heartbeat */
  state: 'alive' | 'suspect' | 'dead' | 'left' | 'unknown'
  /** ms since the last heartbeat; null when none was heard */
  heartbeatAgeMs: number | null
  metrics: PeerMetrics | null
}

/** What `GET /mesh/view` answers. */
export interface MeshView {
  self: string
  /** how this agent's connections are protected: mode, and the cluster key's fingerprint */
  trust: { mode: 'home' | 'lab' | 'open', keyId?: string }
  nodes: ViewNode[]
  /** every host's placements (the models it decided to run, their state and load progress) */
  placements: ViewPlacement[]
  /** the pins in effect (`host` absent: anywhere) */
  pins: EffectivePin[]
}

/** One placement of the view: the host's entry, flattened. */
export interface ViewPlacement extends Placement {
  /** the host that carries it out */
  peerId: string
}
