import type { Clock, Logger } from '@llmesh/protocol'
import { pruneRule, type ClusterDoc, type PruneRule } from '@llmesh/state'
import { PRUNE_CHECK_INTERVAL_MS, RECORD_REFRESH_FRACTION } from './constants.js'
import { Timers } from '@llmesh/kit'
import { LAN_TIMINGS, type Membership, type MembershipTimings } from './membership.js'
import { guarded, type MeshStats } from './stats.js'
import type { Transport } from './transport.js'

export interface PrunerInit {
  doc: ClusterDoc
  membership: Membership
  stats: MeshStats
  /** @default LAN_TIMINGS */
  timings?: MembershipTimings
  /** called when our own record should be written again (periodic refresh against pruning) */
  refreshSelf?: () => void
}

/**
 * Forgets long-dead peers: their members, and their entries in the cluster document under the
 * pruning rule of `@llmesh/state` (mayPrune), which this part gives the document with what it
 * reads of liveness here. Only the usable peer with the smallest id deletes, so once; every
 * receiver re-checks the same rule. Also asks the owner to refresh its record well within
 * pruneAfterMs (RECORD_REFRESH_FRACTION), so a live host is never pruned.
 */
export class Pruner {
  private readonly timers: Timers
  private readonly pruneAfterMs: number
  private readonly rule: PruneRule

  constructor (private readonly transport: Transport, private readonly clock: Clock, private readonly log: Logger, private readonly init: PrunerInit) {
    this.timers = new Timers(clock)
    this.pruneAfterMs = (init.timings ?? LAN_TIMINGS).pruneAfterMs
    this.rule = pruneRule(() => ({
      self: this.transport.peerId, now: this.clock.now(), pruneAfterMs: this.pruneAfterMs, isUsable: (peer) => this.init.membership.isUsable(peer)
    }))
    init.doc.bindPruneRule(this.rule)
  }

  start (): void {
    this.timers.every(Math.min(PRUNE_CHECK_INTERVAL_MS, this.pruneAfterMs / 4), () => {
      guarded(this.init.stats, this.log, 'timer', () => { this.pruneDead() })
    })
    this.timers.every(this.pruneAfterMs * RECORD_REFRESH_FRACTION, () => {
      guarded(this.init.stats, this.log, 'timer', () => { this.init.refreshSelf?.() })
    })
  }

  /** Deletes long-dead entries; only the usable peer with the smallest id does it, so once. */
  pruneDead (): void {
    const { doc, membership } = this.init
    membership.prune()
    const self = this.transport.peerId
    const usable = [self, ...this.transport.connectedPeers().filter((p) => membership.isUsable(p))].sort()
    if (usable[0] !== self) return
    // entries that fail verification count as having no record: junk keys go too
    const gone = [...new Set([...doc.keys(), ...doc.records().map((r) => r.peerId)])].filter((id) => this.rule(id, doc.get(id)))
    if (gone.length > 0 && doc.prune(gone) > 0) this.log.info({ peers: gone }, 'pruned dead entries')
  }

  stop (): void {
    this.timers.clear()
  }
}
