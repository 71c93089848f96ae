import { LlmeshError, MAX_PLACEMENT_ERROR_CHARS, type Clock, type Logger, type Placement, type PlacementReason, type Split } from '@llmesh/protocol'
import { gib, type PlacementView, type SplitPlan } from '@llmesh/scheduler'
import type { Runner, RunnerManager } from '@llmesh/runners'
import type { StartTimings } from './api/port.js'
import { MAX_SPLIT_PARTS, SPLIT_FAILED_KEEP_MS, SPLIT_MEMBERS_READY_MS, SPLIT_POLL_MS } from './constants.js'

/** A local TCP port forwarded to a member's rpc-server over the mesh (see the mesh's RPC tunnel). */
export interface TunnelHandle {
  /** the port on 127.0.0.1 the coordinator's llama-server connects to */
  readonly port: number
  /** bytes sent to the member (weights, unless its cache has them) and received from it */
  readonly bytesSent: number
  readonly bytesReceived: number
  close: () => Promise<void>
}

/** What a split needs of the mesh: tunnels to members' rpc-servers. */
export interface SplitTunnels {
  listen: (peer: string, model: string) => Promise<TunnelHandle>
  /** ends every tunnel to or from `peer` at once (it is gone: a socket must not hang on it) */
  closePeer: (peer: string) => void
}

/** The own placements as Placements keeps them: what a split reads and writes of them. */
export interface OwnPlacements {
  get: (model: string) => Placement | undefined
  set: (model: string, p: Placement) => void
  update: (model: string, change: Partial<Placement>) => void
  delete: (model: string) => void
  all: () => Placement[]
  /** memory this host's placements take now, and its budget, bytes */
  used: () => number
  budget: () => number
}

export interface SplitsInit {
  manager: RunnerManager
  tunnels: SplitTunnels
  own: OwnPlacements
  selfPeerId: string
  snapshot: () => { view: PlacementView }
  clock: Clock
  logger: Logger
}

/** A split this host coordinates. */
interface Coordinated {
  split: Split
  tunnels: Map<string, TunnelHandle>
  runnerId?: string
}

/**
 * Models split across hosts by block, both sides:
 * - coordinator (the host with the file and the most room; planSplit): writes its placement
 *   with the plan, waits for every member's rpc-server (their placements say ready), opens a
 *   mesh tunnel to each, and starts ONE llama-server with `--rpc` to the tunnels and the blocks
 *   shared as planned; that runner serves the model like any other, reused by every request.
 *   A member lost (unreachable, its placement gone or failed) or the runner failed for good
 *   ends the split: the runner stops (requests in flight end with its error), the tunnels
 *   close, the placement goes, and the next request plans again over the hosts left.
 * - member: a reachable coordinator's placement naming this host starts an rpc-server for the
 *   model (127.0.0.1 only, cache on) and a placement of reason `split`; it stops when the plan
 *   no longer names this host or its coordinator is gone. Only that coordinator may tunnel to it.
 */
export class Splits {
  private readonly c: SplitsInit
  private readonly log: Logger
  private readonly coordinated = new Map<string, Coordinated>()
  /** member starts in progress, by model */
  private readonly memberStarts = new Map<string, Promise<void>>()
  /** parts refused for the bound (logged once each) */
  private readonly refusedParts = new Set<string>()

  constructor (init: SplitsInit) {
    this.c = init
    this.log = init.logger.child({ component: 'split' })
  }

  /** Whether this host coordinates a split of `model`. */
  coordinates (model: string): boolean {
    return this.coordinated.has(model)
  }

  /** Bytes sent to and received from each member of the split of `model`, by peer. */
  traffic (model: string): Array<{ peerId: string, bytesSent: number, bytesReceived: number }> {
    const c = this.coordinated.get(model)
    return c == null ? [] : [...c.tunnels].map(([peerId, t]) => ({ peerId, bytesSent: t.bytesSent, bytesReceived: t.bytesReceived }))
  }

  /**
   * Starts `model` here as the coordinator of `plan`. Resolves with the ready runner; on
   * failure the placement says why and everything started for it is stopped.
   */
  async coordinate (model: string, plan: Extract<SplitPlan, { ok: true }>, reason: PlacementReason, t: StartTimings): Promise<Runner> {
    const { own, clock, selfPeerId, manager } = this.c
    const self = plan.members.find((m) => m.peerId === selfPeerId)
    if (self == null || plan.coordinator !== selfPeerId) throw new LlmeshError('INTERNAL', `split of '${model}' is not coordinated by this host`)
    const split: Split = { coordinator: selfPeerId, hosts: plan.members.map((m) => ({ peerId: m.peerId, layers: m.layers, bytes: m.bytes })) }
    const entry: Coordinated = { split, tunnels: new Map() }
    this.coordinated.set(model, entry)
    own.set(model, { model, state: 'planned', reason, footprintBytes: self.bytes, split, since: clock.now() })
    this.log.info({ model, hosts: plan.members.map((m) => `${m.peerId.slice(-8)}=${m.layers}`) }, 'splitting model')
    try {
      // a member with no block would still hold a connection of llama-server's: left out
      const members = plan.members.filter((m) => m.peerId !== selfPeerId && m.layers > 0)
      await this.membersReady(model, members.map((m) => m.peerId))
      t.membersReadyAt = clock.now()
      for (const m of members) entry.tunnels.set(m.peerId, await this.c.tunnels.listen(m.peerId, model))
      const hosts = split.hosts.map((h) => {
        const tunnel = entry.tunnels.get(h.peerId)
        return tunnel != null ? { ...h, endpoint: `127.0.0.1:${tunnel.port}` } : h
      })
      entry.split = { ...split, hosts }
      own.update(model, { split: entry.split })
      const runner = await manager.ensure(model, {
        split: {
          rpc: members.map((m) => `127.0.0.1:${entry.tunnels.get(m.peerId)!.port}`),
          rpcBlocks: members.map((m) => m.layers)
        },
        onRunner: (r) => {
          entry.runnerId = r.id
          t.spawnedAt ??= clock.now()
          own.update(model, { runnerId: r.id, state: 'loading' })
        }
      })
      entry.runnerId = runner.id
      return runner
    } catch (err) {
      await this.end(model, (err as Error).message)
      throw err
    }
  }

  /** Waits until every member's placement of `model` for this coordinator is ready; fails on the first that fails or goes. */
  private async membersReady (model: string, members: string[]): Promise<void> {
    const { clock, selfPeerId } = this.c
    const until = clock.now() + SPLIT_MEMBERS_READY_MS
    for (;;) {
      if (!this.coordinated.has(model)) throw new LlmeshError('RUNNER_FAILED', `split of '${model}' was stopped while its members started`)
      const { view } = this.c.snapshot()
      let waiting = 0
      for (const peer of members) {
        if (!view.reachable.has(peer)) throw new LlmeshError('PEER_UNREACHABLE', `split of '${model}': member ${nameOf(view, peer)} is unreachable`)
        const p = memberPlacement(view, peer, model, selfPeerId)
        if (p?.state === 'failed') throw new LlmeshError('RUNNER_FAILED', `split of '${model}': member ${nameOf(view, peer)} failed: ${p.error ?? 'no reason given'}`)
        if (p?.state !== 'ready') waiting++
      }
      if (waiting === 0) return
      if (clock.now() >= until) throw new LlmeshError('RUNNER_FAILED', `split of '${model}': ${waiting} of ${members.length} members did not start their rpc-server in ${SPLIT_MEMBERS_READY_MS} ms`)
      await new Promise<void>((resolve) => { clock.setTimeout(resolve, SPLIT_POLL_MS) })
    }
  }

  /**
   * One round, both sides: ends the splits coordinated here that lost a member or whose runner
   * gave up; starts and stops this host's rpc-servers as the coordinators' plans say.
   */
  reconcile (): void {
    const { view } = this.c.snapshot()
    const { selfPeerId, manager } = this.c
    for (const [model, c] of this.coordinated) {
      if (c.runnerId == null) continue // still starting: membersReady and the runner's start watch it
      const runner = manager.runners().find((r) => r.id === c.runnerId)
      let lost: string | undefined
      if (runner == null || (runner.state === 'failed' && runner.describe().gaveUp === true)) lost = `its llama-server ${runner == null ? 'is gone' : 'failed'}`
      for (const h of c.split.hosts) {
        if (lost != null || h.peerId === selfPeerId) continue
        if (!view.reachable.has(h.peerId)) lost = `member ${nameOf(view, h.peerId)} is unreachable`
        else {
          const p = memberPlacement(view, h.peerId, model, selfPeerId)
          if (p == null || p.state === 'failed') lost = `member ${nameOf(view, h.peerId)} ${p == null ? 'no longer holds its blocks' : `failed: ${p.error ?? ''}`}`
        }
      }
      if (lost != null) {
        this.log.warn({ model, why: lost }, 'split lost a part: stopping it; the next request plans it again')
        void this.end(model, lost)
      }
    }
    // a split that ended says why for a while, then goes
    const now = this.c.clock.now()
    for (const p of this.c.own.all()) {
      if (p.split?.coordinator === selfPeerId && p.state === 'failed' && !this.coordinated.has(p.model) && now - p.since > SPLIT_FAILED_KEEP_MS) this.c.own.delete(p.model)
    }
    this.reconcileMembers(view)
  }

  /** Stops the split of `model` coordinated here: its runner, its tunnels, its placement. */
  async end (model: string, why: string): Promise<void> {
    const c = this.coordinated.get(model)
    if (c == null) return
    this.coordinated.delete(model)
    // failed first: the placement stays to say why (see Placements.sync) once the runner is gone
    const p = this.c.own.get(model)
    if (p?.split?.coordinator === this.c.selfPeerId) this.c.own.update(model, { state: 'failed', error: `split ended: ${why}`.slice(0, MAX_PLACEMENT_ERROR_CHARS) })
    for (const t of c.tunnels.values()) await t.close().catch(() => {})
    if (c.runnerId != null) await this.c.manager.stopRunner(c.runnerId).catch(() => {})
  }

  /** A peer is gone: the tunnels to it end now (the coordinator's llama-server then fails at once instead of hanging). */
  peerGone (peer: string): void {
    this.c.tunnels.closePeer(peer)
  }

  /** Member side: rpc-servers for the plans naming this host, stopped for those that do not. */
  private reconcileMembers (view: PlacementView): void {
    const { selfPeerId, own, manager } = this.c
    const wanted = new Map<string, { split: Split, bytes: number }>()
    for (const [peer, entry] of view.placements) {
      if (peer === selfPeerId || !view.reachable.has(peer)) continue
      for (const p of entry.placements) {
        if (p.split?.coordinator !== peer || p.state === 'failed' || p.state === 'evicting') continue
        const mine = p.split.hosts.find((h) => h.peerId === selfPeerId)
        // only a model the coordinator's own record lists with its blocks: their size is the
        // record's, whatever the plan claims (a plan claiming 0 bytes would pass any budget)
        const info = view.nodes.find((n) => n.peerId === peer)?.models.find((m) => m.name === p.model)
        if (mine == null || wanted.has(p.model) || info?.bytesPerLayer == null) continue
        wanted.set(p.model, { split: p.split, bytes: Math.max(mine.bytes, mine.layers * info.bytesPerLayer) })
      }
    }
    let parts = this.memberModels().length
    for (const [model, w] of wanted) {
      const p = own.get(model)
      if (p != null && p.reason !== 'split') continue // this host runs the model itself
      if (p != null && p.split?.coordinator === w.split.coordinator && p.state !== 'failed') continue
      if (this.memberStarts.has(model)) continue
      // an rpc-server a part: however many plans name this host, a bounded number of processes
      if (p == null && parts >= MAX_SPLIT_PARTS) {
        if (!this.refusedParts.has(model)) this.log.warn({ model, coordinator: w.split.coordinator, max: MAX_SPLIT_PARTS }, 'split part refused: this host holds the most it takes')
        this.refusedParts.add(model)
        continue
      }
      if (p == null) parts++
      const start = this.startMember(model, w.split, w.bytes).finally(() => { this.memberStarts.delete(model) })
      this.memberStarts.set(model, start)
    }
    for (const model of this.memberModels()) {
      const p = own.get(model)!
      const w = wanted.get(model)
      if (w != null && w.split.coordinator === p.split?.coordinator) {
        const r = manager.rpcServerOf(model)
        if (p.state === 'ready' && r?.state === 'failed' && r.describe().gaveUp === true) own.update(model, { state: 'failed', error: `rpc-server failed: ${r.describe().lastError ?? ''}`.slice(0, MAX_PLACEMENT_ERROR_CHARS) })
        continue
      }
      if (this.memberStarts.has(model)) continue
      this.log.info({ model, coordinator: p.split?.coordinator }, 'split member no longer needed: stopping its rpc-server')
      own.delete(model)
      const r = manager.rpcServerOf(model)
      if (r != null) void manager.stopRunner(r.id)
    }
  }

  private memberModels (): string[] {
    return this.c.own.all().filter((p) => p.reason === 'split').map((p) => p.model)
  }

  private async startMember (model: string, split: Split, bytes: number): Promise<void> {
    const { own, clock, manager } = this.c
    const free = Math.max(0, own.budget() - own.used() + (own.get(model)?.footprintBytes ?? 0))
    if (bytes > free) {
      own.set(model, { model, state: 'failed', reason: 'split', split, footprintBytes: bytes, error: `no room for its blocks: they need ${gib(bytes)} GiB, this host has ${gib(free)} GiB free`, since: clock.now() })
      return
    }
    own.set(model, { model, state: 'planned', reason: 'split', split, footprintBytes: bytes, since: clock.now() })
    try {
      const r = await manager.ensureRpcServer(model)
      // the plan may have moved on while it started
      if (own.get(model)?.split?.coordinator === split.coordinator) own.update(model, { state: 'ready', runnerId: r.id })
    } catch (err) {
      own.update(model, { state: 'failed', error: (err as Error).message.slice(0, MAX_PLACEMENT_ERROR_CHARS) })
    }
  }

  /**
   * Member side of a tunnel: `peer` may reach this host's rpc-server for `model` only when it
   * coordinates the split of `model` that this host is a member of. Returns the loopback address.
   */
  async resolveTunnel (peer: string, model: string): Promise<{ host: string, port: number }> {
    const p = this.c.own.get(model)
    if (p?.reason !== 'split' || p.split?.coordinator !== peer) {
      throw new LlmeshError('FORBIDDEN', `this host holds no blocks of '${model}' for that peer`)
    }
    const r = await this.c.manager.ensureRpcServer(model)
    return { host: '127.0.0.1', port: r.port }
  }
}

/** `peer`'s placement of `model` as a member of the split `coordinator` runs. */
function memberPlacement (view: PlacementView, peer: string, model: string, coordinator: string): Placement | undefined {
  return view.placements.get(peer)?.placements.find((p) => p.model === model && p.reason === 'split' && p.split?.coordinator === coordinator)
}

function nameOf (view: PlacementView, peer: string): string {
  return `'${view.nodes.find((n) => n.peerId === peer)?.name ?? peer}'`
}
