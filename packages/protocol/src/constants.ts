/**
 * Wire identifiers. ONLY APPEND TO THESE: a peer running an older llmesh must still
 * understand every id it knows.
 */

/** libp2p protocol that carries one forwarded inference request and its streamed response. */
export const INFER_PROTOCOL = '/llmesh/infer/1'

/** libp2p protocol for the cluster document's state-vector sync (SV -> diff, both ways). */
export const SYNC_PROTOCOL = '/llmesh/sync/1'

/** gossipsub topic carrying cluster-document deltas for one cluster. */
export function stateTopic (clusterId: string): string {
  return `llmesh/${clusterId}/state/1`
}

/**
 * libp2p protocol carrying heartbeats (ephemeral metrics) on one long-lived stream per
 * connected peer. Not a gossipsub topic: gossipsub forwards every message to D mesh peers on
 * top of the publisher's own sends and signs each one, which for frequent small messages in a
 * fully connected cluster costs several times the payload; a direct stream sends each
 * heartbeat once per peer and the connection already authenticates the sender.
 */
export const METRICS_PROTOCOL = '/llmesh/metrics/1'

/** Response headers an agent sets on every routed request. */
export const HEADER_NODE = 'x-llmesh-node'
export const HEADER_RUNNER = 'x-llmesh-runner'
export const HEADER_ROUTE = 'x-llmesh-route'

/** Request headers an agent reads. */
/** routing strategy for this request (see the scheduler's STRATEGIES); unknown = 400 */
export const HEADER_STRATEGY = 'x-llmesh-strategy'
/** priority 0-10, higher first; anything else = 400 */
export const HEADER_PRIORITY = 'x-llmesh-priority'
/** longest time the request may wait for a slot, ms from its arrival; expired = 504 */
export const HEADER_DEADLINE = 'x-llmesh-deadline-ms'
/** request: start the model even where it does not fit the host's model memory (1/true) */
export const HEADER_LOAD_ANYWAY = 'x-llmesh-load-anyway'

/** llmesh protocol version carried in every NodeRecord. */
export const PROTOCOL_VERSION = 1
