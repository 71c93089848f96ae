import { z } from 'zod'
import { MAX_RECORD_BYTES_FIGURE } from './records.js'

/**
 * Placement of whole models, as the cluster document carries it. Two sections beside `nodes`,
 * each keyed by the peer id of the ONE peer that writes the entry and signs it (as node
 * records are signed):
 * - `placements[host]`: the models `host` has decided to run, and how far it got;
 * - `pins[peer]`: the pins and unpins `peer` was asked to set (config, admin API).
 * Load figures (queues, slots in use) are not here: they change per request and travel on the
 * metrics channel.
 */

const modelName = z.string().min(1).max(256)
const peerId = z.string().min(1).max(128)
const time = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER)
const bytes = z.number().int().nonnegative().max(MAX_RECORD_BYTES_FIGURE)

/** ONLY APPEND: states cross the wire. */
export const PlacementStates = ['planned', 'loading', 'ready', 'failed', 'evicting'] as const
export type PlacementState = typeof PlacementStates[number]

/**
 * Why a host runs a model. ONLY APPEND.
 * - `config`: started with the agent (`--model`): kept like a pin on that host
 * - `request`: a request for a model no host ran (cold start)
 * - `pin`: a pin asked for it
 * - `replica`: demand outgrew the hosts that ran it
 * - `split`: this host holds blocks of a model split across hosts (an rpc-server), for the
 *   coordinator its `split` names; it serves no requests for the model itself
 */
export const PlacementReasons = ['config', 'request', 'pin', 'replica', 'split'] as const
export type PlacementReason = typeof PlacementReasons[number]

/** Longest failure text a placement carries (the runner's last stderr lines included). */
export const MAX_PLACEMENT_ERROR_CHARS = 2048

/** Most hosts one split placement spans. */
export const MAX_SPLIT_HOSTS = 16

/** One host of a split placement: the blocks it holds and the memory they take there. */
export const SplitHostSchema = z.object({
  peerId,
  /** transformer blocks on this host */
  layers: z.number().int().nonnegative().max(1_000_000),
  /** memory the blocks take there (the coordinator: with the rest of the model and its overhead), bytes */
  bytes,
  /** in the coordinator's entry: the loopback address its llama-server reaches this host's rpc-server at (a mesh tunnel) */
  endpoint: z.string().max(64).optional()
})
export type SplitHost = z.infer<typeof SplitHostSchema>

/**
 * A model split across hosts by block: the coordinator runs llama-server with the rest of the
 * model and reaches the others' rpc-servers through the mesh. The coordinator's placement
 * carries the plan; each member's placement (reason `split`) carries a copy, so every host and
 * `llmesh status` sees who holds what.
 */
export const SplitSchema = z.object({
  coordinator: peerId,
  /** the coordinator first; blocks sum to the model's */
  hosts: z.array(SplitHostSchema).min(1).max(MAX_SPLIT_HOSTS)
})
export type Split = z.infer<typeof SplitSchema>

export const PlacementSchema = z.object({
  model: modelName,
  state: z.enum(PlacementStates),
  reason: z.enum(PlacementReasons),
  /** the runner carrying it out on the owner host, once there is one */
  runnerId: z.string().max(128).optional(),
  /** while loading: share of the weights loaded, 0..1, when the runner reports it */
  progress: z.number().min(0).max(1).optional(),
  /** memory the model takes on the host as planned (weights + KV cache + overhead), bytes */
  footprintBytes: bytes.optional(),
  /** failed: why, with the runner's last stderr lines */
  error: z.string().max(MAX_PLACEMENT_ERROR_CHARS).optional(),
  /** a model split across hosts: the plan (in the coordinator's and in each member's placement) */
  split: SplitSchema.optional(),
  /** when this state began, ms since the epoch (owner's clock) */
  since: time
})
export type Placement = z.infer<typeof PlacementSchema>

/**
 * Whether a placement serves requests for its model on its host: not a split member's (it
 * holds blocks for a coordinator elsewhere).
 */
export function servesRequests (p: Pick<Placement, 'reason'>): boolean {
  return p.reason !== 'split'
}

/**
 * Whether a runner takes requests for its model: not an rpc-server (it holds blocks of a split
 * model for a coordinator elsewhere).
 */
export function runnerServes (r: { kind: string }): boolean {
  return r.kind !== 'rpc-server'
}

/** Most placements one host carries. */
export const MAX_PLACEMENTS_PER_HOST = 64

/** The entry a host owns in the `placements` section, keyed by its peer id. */
export const PlacementsEntrySchema = z.object({
  peerId,
  placements: z.array(PlacementSchema).max(MAX_PLACEMENTS_PER_HOST),
  updatedAt: time,
  /** the owner's signature over the canonical content, base64url */
  sig: z.string().max(256)
})
export type PlacementsEntry = z.infer<typeof PlacementsEntrySchema>
export type UnsignedPlacementsEntry = Omit<PlacementsEntry, 'sig'>

/**
 * One pin or unpin. `host` absent: the model stays loaded somewhere in the mesh. Pins of every
 * owner merge per (model, host): the latest `at` wins (owner peer id breaks ties), so an unpin
 * set at any agent undoes a pin set at another.
 */
export const PinSchema = z.object({
  model: modelName,
  /** peer id of the host that keeps the model; absent = anywhere */
  host: peerId.optional(),
  /** false: an unpin (it overrides older pins of the same model and host) */
  pinned: z.boolean(),
  at: time
})
export type Pin = z.infer<typeof PinSchema>

/** Most pins (and unpins) one peer writes. */
export const MAX_PINS_PER_PEER = 256

/** The entry a peer owns in the `pins` section, keyed by its peer id. */
export const PinsEntrySchema = z.object({
  peerId,
  pins: z.array(PinSchema).max(MAX_PINS_PER_PEER),
  updatedAt: time,
  sig: z.string().max(256)
})
export type PinsEntry = z.infer<typeof PinsEntrySchema>
export type UnsignedPinsEntry = Omit<PinsEntry, 'sig'>

/** A pin in effect, after merging every owner's entry. */
export interface EffectivePin {
  model: string
  /** absent: anywhere */
  host?: string
}

/**
 * The pins in effect: per (model, host), the latest pin or unpin of any owner (ties: the larger
 * owner peer id), keeping those that pin. Sorted by model, then host.
 */
export function effectivePins (entries: Iterable<Pick<PinsEntry, 'peerId' | 'pins'>>): EffectivePin[] {
  const latest = new Map<string, { pin: Pin, owner: string }>()
  for (const e of entries) {
    for (const pin of e.pins) {
      const key = `${pin.model}\u0000${pin.host ?? ''}`
      const cur = latest.get(key)
      if (cur == null || pin.at > cur.pin.at || (pin.at === cur.pin.at && e.peerId > cur.owner)) latest.set(key, { pin, owner: e.peerId })
    }
  }
  return [...latest.values()]
    .filter(({ pin }) => pin.pinned)
    .map(({ pin }) => pin.host != null ? { model: pin.model, host: pin.host } : { model: pin.model })
    .sort((a, b) => a.model < b.model ? -1 : a.model > b.model ? 1 : (a.host ?? '') < (b.host ?? '') ? -1 : (a.host ?? '') > (b.host ?? '') ? 1 : 0)
}
