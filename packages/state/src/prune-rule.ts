import type { NodeRecord } from '@llmesh/protocol'

/**
 * Whether an entry of the cluster document may be deleted by someone other than its owner
 * (pruning a long-dead host): `last` is its last valid record (none: the entry never verified),
 * `sender` the deleting peer when known. Every peer applies the same rule to deletes it makes
 * and to deletes it receives.
 */
export type PruneRule = (key: string, last: NodeRecord | undefined, sender?: string) => boolean

/** The rule that allows nothing: a document without a liveness source never prunes. */
export const NEVER_PRUNE: PruneRule = () => false

/** What the pruning rule reads of the world: who we are, the time, and who is alive. */
export interface PruneFacts {
  /** this peer's id: its own entry is never pruned */
  self: string
  /** local clock time, ms */
  now: number
  /** how long a record may go unrefreshed before its entry may go, ms */
  pruneAfterMs: number
  /** whether the peer is alive or suspect here (heard recently): such a peer is never pruned */
  isUsable: (peer: string) => boolean
}

/**
 * The pruning rule, the same on every peer: an entry may be deleted once its record has not
 * been refreshed for pruneAfterMs (owners refresh well within that) and its peer is neither
 * alive nor suspect here. An entry without a valid record (junk keys) may go at once. Clock skew
 * between hosts up to pruneAfterMs x (1 - the owners' refresh fraction) is tolerated. Pure.
 */
export function mayPrune (key: string, last: NodeRecord | undefined, facts: PruneFacts): boolean {
  if (key === facts.self || facts.isUsable(key)) return false
  if (last == null) return true
  return facts.now - last.updatedAt >= facts.pruneAfterMs
}

/** The rule over facts read at each call (the sender of a delete does not change the answer). */
export function pruneRule (facts: () => PruneFacts): PruneRule {
  return (key, last) => mayPrune(key, last, facts())
}
