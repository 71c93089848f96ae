import { z } from 'zod'
import {
  DEFAULT_P2P_PORT, HEARTBEAT_INTERVAL_MS, MDNS_INTERVAL_MS, MIN_ANNOUNCED_INTERVAL_MS, PEER_FRAME_GAP_MS, PEER_HEAD_TIMEOUT_MS,
  WRITE_STALL_MS
} from './constants.js'
import { LAN_TIMINGS } from './membership.js'

/**
 * The mesh's part of a host's configuration, as zod schemas with this package's named
 * defaults. `@llmesh/agent` composes them into its config schema and validates once, at start;
 * what they produce is what MeshInit takes (`listen`, `bootstrap`, `mdns`,
 * `heartbeatIntervalMs`, `timings`, `inferLimits.writeStallMs`) and what `requestInfer` takes
 * (InferTimeouts: `headMs`, `gapMs`).
 */

/** The libp2p node: where it listens, whom it dials, how it finds peers and how often it beats. */
export const P2pConfigSchema = z.strictObject({
  /** libp2p listen multiaddrs. @default /ip4/0.0.0.0/tcp/DEFAULT_P2P_PORT (4778) */
  listen: z.array(z.string()).default(() => [`/ip4/0.0.0.0/tcp/${DEFAULT_P2P_PORT}`]),
  /** peers dialled at start and re-dialled while unconnected (multiaddrs, ideally with /p2p/<id>). @default [] */
  bootstrap: z.array(z.string()).default(() => []),
  /** find peers of the same cluster on the LAN by multicast DNS. @default true */
  mdns: z.boolean().default(true),
  /**
   * mDNS query period (a new agent asks at start anyway; known peers are redialled every
   * second). @default MDNS_INTERVAL_MS (30000 ms)
   */
  mdnsIntervalMs: z.number().int().min(100).default(MDNS_INTERVAL_MS),
  /**
   * heartbeat period to every connected peer; peers raise a shorter announced period to
   * MIN_ANNOUNCED_INTERVAL_MS, so none may be configured. @default HEARTBEAT_INTERVAL_MS (500 ms)
   */
  heartbeatIntervalMs: z.number().int().min(MIN_ANNOUNCED_INTERVAL_MS).default(HEARTBEAT_INTERVAL_MS)
}).prefault({})
export type P2pConfig = z.infer<typeof P2pConfigSchema>

/**
 * Failure detection (MembershipTimings; LAN_TIMINGS by default). A host silent for
 * suspectAfterMs is suspect (still routable if connected), for deadAfterMs dead (not routed
 * to), and its entry is pruned after pruneAfterMs. deadAfterMs is the longest link flap that
 * evicts nobody.
 */
export const MembershipConfigSchema = z.strictObject({
  /** @default LAN_TIMINGS.suspectAfterMs (1500 ms, three missed heartbeats) */
  suspectAfterMs: z.number().int().positive().default(LAN_TIMINGS.suspectAfterMs),
  /** @default LAN_TIMINGS.deadAfterMs (4000 ms) */
  deadAfterMs: z.number().int().positive().default(LAN_TIMINGS.deadAfterMs),
  /** @default LAN_TIMINGS.pruneAfterMs (600000 ms, 10 min) */
  pruneAfterMs: z.number().int().positive().default(LAN_TIMINGS.pruneAfterMs)
}).prefault({}).refine((m) => m.suspectAfterMs < m.deadAfterMs && m.deadAfterMs < m.pruneAfterMs, {
  message: 'needs suspectAfterMs < deadAfterMs < pruneAfterMs'
})
export type MembershipConfig = z.infer<typeof MembershipConfigSchema>

/**
 * What this agent waits for from a peer it forwarded a request to, and how long a client that
 * stops reading may hold a slot. A peer is asked for keepalive frames while it works (queued,
 * evaluating the prompt, generating a non-streaming answer), so silence means a peer that does
 * not answer.
 */
export const PeerLimitsConfigSchema = z.strictObject({
  /**
   * a peer that sends nothing (no head, no keepalive) this long after a request went to it is
   * taken for silent: the request fails over to the next host. @default PEER_HEAD_TIMEOUT_MS (10000 ms)
   */
  headTimeoutMs: z.number().int().min(100).max(600_000).default(PEER_HEAD_TIMEOUT_MS),
  /**
   * once a peer answers, the longest silence between its frames (keepalives count) and inside
   * a frame: before the first token the request fails over, after it the stream ends with a
   * STALLED error. @default PEER_FRAME_GAP_MS (10000 ms)
   */
  frameGapMs: z.number().int().min(100).max(600_000).default(PEER_FRAME_GAP_MS),
  /**
   * a client (HTTP, or a peer this host serves) that reads nothing for this long loses its
   * stream: it ends with a STALLED error and the runner's slot is freed. @default WRITE_STALL_MS (30000 ms)
   */
  writeStallMs: z.number().int().min(100).max(3_600_000).default(WRITE_STALL_MS)
}).prefault({})
export type PeerLimitsConfig = z.infer<typeof PeerLimitsConfigSchema>
