import {
  LlmeshError, MAX_PLACEMENT_ERROR_CHARS, effectivePins, runnerServes, servesRequests, type Clock, type EffectivePin, type Logger, type PinsEntry, type Placement,
  type PlacementReason, type Signal, type TimerHandle
} from '@llmesh/protocol'
import {
  chooseEvictions, decideReplicas, footprintBytes, gib, hostModelMemBytes, idleUnload, isPinned, planCold, planSplit, scaleDown,
  type IdleState, type LocalRunnerUse, type PlacementConfig, type PlacementView, type ReplicaState, type ReportingPeer
} from '@llmesh/scheduler'
import type { Runner, RunnerManager } from '@llmesh/runners'
import type { ClusterDoc } from '@llmesh/state'
import type { LocalPlacement, StartTimings } from './api/port.js'
import type { LocalServing } from './serving.js'
import { PLACEMENT_RECONCILE_MS, PROGRESS_STEP } from './constants.js'
import { Splits, type SplitTunnels } from './split.js'

export interface PlacementsInit {
  config: PlacementConfig
  /** context per runner, tokens: the footprint of a model counts its KV cache */
  ctxSize: number
  manager: RunnerManager
  serving: LocalServing
  doc: ClusterDoc
  selfPeerId: string
  /** models started with the agent (`--model`): kept on this host like pins */
  configured: ReadonlySet<string>
  /**
   * the mesh for placement decisions as of now, and every peer membership knows with its last
   * metrics (this host included): one snapshot for both
   */
  snapshot: () => { view: PlacementView, peers: readonly ReportingPeer[] }
  /** the mesh's tunnels to other hosts' rpc-servers; unset: this host splits no model */
  tunnels?: SplitTunnels
  clock: Clock
  logger: Logger
}

/** What one start asks for. */
export interface EnsureOptions {
  signal: Signal
  /** clock time after which the caller stops waiting (the load goes on) */
  deadline: number
  /** start even when the model does not fit this host's model memory */
  loadAnyway: boolean
  reason: PlacementReason
}

/**
 * This host's side of placement: it starts the models it is asked for (a request routed here
 * for a model it has on disk, a pin, a replica the scheduler names it for), makes room by
 * evicting the least recently used unpinned model (drained first, bounded), stops idle
 * replicas, and writes what it runs into its own `placements` entry of the cluster document,
 * with load progress and failures. Decisions are the scheduler's pure functions; one start per
 * model at a time (concurrent callers share it), so requests racing for one cold model start
 * one runner here, and every entry picks the same host for it (planCold is deterministic).
 */
export class Placements {
  private readonly c: PlacementsInit
  private readonly log: Logger
  /** this host's placements by model: what its entry says */
  private readonly own = new Map<string, Placement>()
  /** starts in progress by model */
  private readonly starts = new Map<string, Promise<Runner>>()
  /** runners being drained for an eviction: not given new requests */
  private readonly draining = new Set<string>()
  /** the last start of each model, step by step */
  private readonly timings = new Map<string, StartTimings>()
  /** the pins in effect, merged once per change of the pins section (routers read them every request) */
  private pinsMerged?: { from: ReadonlyMap<string, PinsEntry>, pins: EffectivePin[] }
  private replicas: ReplicaState = { pressureSince: new Map() }
  private idle: IdleState = { idleSince: new Map() }
  private timer?: TimerHandle
  private publishQueued = false
  private stopped = false
  /** models split across hosts, as coordinator or member */
  readonly splits?: Splits

  constructor (init: PlacementsInit) {
    this.c = init
    this.log = init.logger.child({ component: 'placement' })
    if (init.tunnels != null) {
      this.splits = new Splits({
        manager: init.manager,
        tunnels: init.tunnels,
        selfPeerId: init.selfPeerId,
        snapshot: init.snapshot,
        clock: init.clock,
        logger: init.logger,
        own: {
          get: (model) => this.own.get(model),
          set: (model, p) => { this.set(model, p) },
          update: (model, change) => { this.update(model, change) },
          delete: (model) => { if (this.own.delete(model)) this.publish() },
          all: () => [...this.own.values()],
          used: () => this.used(),
          budget: () => this.budget()
        }
      })
    }
  }

  /** Model memory of this host, bytes: what its record publishes and its evictions count against. */
  budget (): number {
    return hostModelMemBytes(this.c.manager.hardware(), this.c.config)
  }

  /** Writes the config's pins and the configured models' placements, then reconciles periodically. */
  start (): void {
    const now = this.c.clock.now()
    const pins = this.c.config.pins.map((p) => ({
      model: p.model,
      ...(p.host == null ? {} : { host: p.host === 'self' ? this.c.selfPeerId : p.host }),
      pinned: true,
      at: now
    }))
    // both entries are written at once, so that an old entry of this peer from before a restart
    // is replaced (and guarded from then on)
    this.writePins(pins)
    this.c.manager.onChange(() => { this.sync() })
    this.sync()
    this.publish()
    const tick = (): void => {
      this.timer = this.c.clock.setTimeout(() => {
        if (this.stopped) return
        this.reconcile().catch((err: unknown) => { this.log.warn({ err: (err as Error).message }, 'placement round failed') }).finally(tick)
      }, PLACEMENT_RECONCILE_MS)
    }
    tick()
  }

  stop (): void {
    this.stopped = true
    this.c.clock.clearTimeout(this.timer)
  }

  /** The ready runner of `model` here that takes the request (`preferred` when it can), skipping those being drained. */
  find (model: string, preferred: string | undefined, load: (r: Runner) => number): Runner | undefined {
    if (this.draining.size === 0) return this.c.manager.find(model, preferred, load)
    const drainingLast = (r: Runner): number => this.draining.has(r.id) ? Infinity : load(r)
    const r = this.c.manager.find(model, preferred != null && this.draining.has(preferred) ? undefined : preferred, drainingLast)
    return r != null && this.draining.has(r.id) ? undefined : r
  }

  /** Member side of a split's tunnel: the loopback rpc-server `peer` may reach for `model` (see Splits.resolveTunnel). */
  async resolveTunnel (peer: string, model: string): Promise<{ host: string, port: number }> {
    if (this.splits == null) throw new LlmeshError('FORBIDDEN', 'this host holds no blocks of split models')
    return await this.splits.resolveTunnel(peer, model)
  }

  /** Whether this host has `model` on disk (its catalog), so a request for it may start it here. */
  has (model: string): boolean {
    return this.c.manager.catalogModel(model) != null
  }

  /**
   * Makes `model` ready here: joins a start in progress, or starts it (making room first).
   * Resolves when its runner is ready; the caller stops waiting at its deadline or abort
   * (DEADLINE_EXCEEDED saying how far the load got), while the load goes on for later requests.
   */
  async ensure (model: string, opts: EnsureOptions): Promise<void> {
    if (this.stopped) throw new LlmeshError('NO_CAPACITY', 'the agent is shutting down')
    let start = this.starts.get(model)
    if (start == null) {
      start = this.load(model, opts.reason, opts.loadAnyway)
      this.starts.set(model, start)
      const forget = (): void => { if (this.starts.get(model) === start) this.starts.delete(model) }
      start.then(forget, forget)
    }
    await this.bounded(model, start, opts)
  }

  private async bounded (model: string, start: Promise<Runner>, opts: EnsureOptions): Promise<void> {
    const { clock } = this.c
    if (opts.signal.aborted) throw opts.signal.reason
    let timer: TimerHandle | undefined
    let onAbort: (() => void) | undefined
    try {
      await Promise.race([
        start,
        new Promise<never>((_resolve, reject) => {
          timer = clock.setTimeout(() => {
            const p = this.own.get(model)
            const how = p?.progress != null ? ` (${Math.round(p.progress * 100)}% loaded)` : ''
            reject(new LlmeshError('DEADLINE_EXCEEDED', `the request's deadline passed while model '${model}' was loading${how}; it goes on loading`))
          }, Math.max(0, opts.deadline - clock.now()))
          onAbort = () => { reject(opts.signal.reason) }
          opts.signal.addEventListener('abort', onAbort, { once: true })
        })
      ])
    } finally {
      clock.clearTimeout(timer)
      if (onAbort != null) opts.signal.removeEventListener('abort', onAbort)
    }
  }

  /** One start: room, then the runner, with the placement entry following each step. */
  private async load (model: string, reason: PlacementReason, loadAnyway: boolean): Promise<Runner> {
    const { manager, clock } = this.c
    const t: StartTimings = { askedAt: clock.now() }
    this.timings.set(model, t)
    const existing = manager.runners().find((r) => r.model === model && (r.kind === 'llama-server' || r.kind === 'embedded') && r.state !== 'failed' && r.state !== 'stopped')
    if (existing == null) {
      const local = manager.catalogModel(model)
      if (local == null) throw new LlmeshError('MODEL_NOT_FOUND', `no model '${model}' on this host`)
      const need = footprintBytes(local.info, this.c.ctxSize)
      if (!loadAnyway) {
        try {
          await this.makeRoom(model, need)
        } catch (err) {
          const split = this.splitPlan(model, err)
          t.plannedAt = clock.now()
          return await this.splits!.coordinate(model, split, reason, t)
        }
      }
      this.set(model, { model, state: 'planned', reason, footprintBytes: need, since: clock.now() })
    }
    t.plannedAt = clock.now()
    try {
      const runner = await manager.ensure(model, {
        onRunner: (r) => {
          t.spawnedAt = clock.now()
          this.update(model, { runnerId: r.id, state: 'loading' })
        }
      })
      t.readyAt ??= clock.now()
      this.update(model, { runnerId: runner.id, state: 'ready' })
      return runner
    } catch (err) {
      const e = err as Error
      this.update(model, { state: 'failed', error: e.message.slice(0, MAX_PLACEMENT_ERROR_CHARS) })
      throw err
    }
  }

  /**
   * A model that does not fit here whole (`err`, INSUFFICIENT_MEMORY): the split planSplit
   * makes with this host as its coordinator. Else the error: planSplit's when the hosts
   * together are too small (the blocks each could hold), `err` when it cannot be split here.
   */
  private splitPlan (model: string, err: unknown): Extract<ReturnType<typeof planSplit>, { ok: true }> {
    if (this.splits == null || !(err instanceof LlmeshError) || err.code !== 'INSUFFICIENT_MEMORY') throw err
    const plan = planSplit(model, this.c.snapshot().view, { ctxSize: this.c.ctxSize })
    if (!plan.ok) throw plan.splittable ? new LlmeshError(plan.code, plan.message) : err
    if (plan.coordinator !== this.c.selfPeerId || plan.members.length < 2) throw err
    return plan
  }

  /** Memory this host's models take now, bytes: its placements that are not failed. */
  private used (): number {
    let used = 0
    for (const p of this.own.values()) if (p.state !== 'failed') used += p.footprintBytes ?? 0
    return used
  }

  /** The pins in effect over the mesh. */
  effectivePins (): EffectivePin[] {
    const from = this.c.doc.pins()
    if (this.pinsMerged?.from !== from) this.pinsMerged = { from, pins: effectivePins(from.values()) }
    return this.pinsMerged.pins
  }

  /**
   * Frees `need` bytes of model memory: the least recently used unpinned models go, idle ones
   * before serving ones; a serving one takes no new requests and is stopped once its requests
   * end (at most evictDrainMs, else the start fails and it keeps serving). INSUFFICIENT_MEMORY,
   * with the figures, when the unpinned models together are not enough.
   */
  private async makeRoom (model: string, need: number): Promise<void> {
    const budget = this.budget()
    const free = Math.max(0, budget - this.used())
    if (need <= free) return
    // the scheduler's rule: pinned here, started with the agent, or the only live copy of a model pinned anywhere
    const { view } = this.c.snapshot()
    const uses: LocalRunnerUse[] = []
    for (const p of this.own.values()) {
      // a split member's blocks go with its coordinator, never by eviction here
      if (p.runnerId == null || p.state === 'failed' || p.model === model || !servesRequests(p)) continue
      uses.push({
        runnerId: p.runnerId,
        model: p.model,
        footprintBytes: p.footprintBytes ?? 0,
        lastUsedAt: this.c.serving.lastUsedAt(p.runnerId),
        inflight: this.c.serving.inflight(p.runnerId),
        pinned: isPinned(this.c.selfPeerId, p, p, view)
      })
    }
    const choice = chooseEvictions(uses, need, free)
    if (!choice.ok) {
      const kept = uses.filter((u) => u.pinned).map((u) => u.model)
      throw new LlmeshError('INSUFFICIENT_MEMORY', `model '${model}' needs ${gib(need)} GiB; this host has ${gib(free)} GiB free of ${gib(budget)} GiB` +
        `${kept.length > 0 ? ` and keeps ${kept.join(', ')} (pinned)` : ''} (set loadAnyway or x-llmesh-load-anyway: 1 to load it anyway)`)
    }
    for (const runnerId of choice.evict) await this.evict(runnerId)
  }

  /** Stops one runner after its requests end (bounded); its placement is gone once it stopped. */
  async evict (runnerId: string): Promise<void> {
    const p = [...this.own.values()].find((x) => x.runnerId === runnerId)
    if (p == null) return
    const { serving, clock, config } = this.c
    this.draining.add(runnerId)
    this.update(p.model, { state: 'evicting' })
    try {
      const until = clock.now() + config.evictDrainMs
      while (serving.inflight(runnerId) > 0) {
        if (clock.now() >= until) {
          this.update(p.model, { state: 'ready' })
          throw new LlmeshError('NO_CAPACITY', `model '${p.model}' still serves requests after ${config.evictDrainMs} ms: not evicted, so there is no room here`)
        }
        await new Promise<void>((resolve) => { clock.setTimeout(resolve, DRAIN_POLL_MS) })
      }
      this.log.info({ model: p.model, runner: runnerId }, 'evicting model')
      await this.c.manager.stopRunner(runnerId)
      serving.forget(runnerId)
      this.own.delete(p.model)
      this.publish()
    } finally {
      this.draining.delete(runnerId)
    }
  }

  /**
   * Follows the runners: a configured model's placement, load progress, ready, failed (with its
   * stderr), gone. Only the runners whose model this host loads itself (llama-server, embedded):
   * an adopted Ollama or MLX server manages its own memory, and rpc-servers belong to split
   * placements.
   */
  private sync (): void {
    const now = this.c.clock.now()
    const seen = new Set<string>()
    for (const r of this.c.manager.runners()) {
      if (r.kind !== 'llama-server' && r.kind !== 'embedded') continue
      seen.add(r.model)
      let p = this.own.get(r.model)
      if (p == null) {
        const local = this.c.manager.catalogModel(r.model)
        p = {
          model: r.model,
          state: 'loading',
          reason: this.c.configured.has(r.model) ? 'config' : 'request',
          runnerId: r.id,
          ...(local != null ? { footprintBytes: footprintBytes(local.info, this.c.ctxSize) } : {}),
          since: now
        }
        this.own.set(r.model, p)
      }
      if (p.state === 'evicting' || p.state === 'planned') continue
      const info = r.info()
      let next: Partial<Placement> = {}
      if (r.state === 'ready' || r.state === 'busy') {
        const t = this.timings.get(r.model)
        if (t != null) t.readyAt ??= now
        next = { state: 'ready', runnerId: r.id }
      }
      else if (r.state === 'starting' || r.state === 'loading') {
        const t = this.timings.get(r.model)
        if (r.state === 'loading' && t != null && t.readyAt == null) t.loadingAt ??= now
        const progress = info.progress != null ? Math.floor(info.progress / PROGRESS_STEP) * PROGRESS_STEP : undefined
        next = { state: 'loading', runnerId: r.id, ...(progress != null ? { progress } : {}) }
      } else if (r.state === 'failed' && r.describe().gaveUp !== true) {
        // restarting (with backoff): still this host's to run; a split's members keep their parts
        next = { state: 'loading', runnerId: r.id }
      } else if (r.state === 'failed') {
        const tail = r.describe().stderrTail
        next = { state: 'failed', runnerId: r.id, error: `${info.lastError ?? 'failed'}${tail != null && tail !== '' ? `\n${tail}` : ''}`.slice(0, MAX_PLACEMENT_ERROR_CHARS) }
      }
      if (Object.keys(next).length > 0) this.update(r.model, next)
    }
    for (const [model, p] of this.own) {
      // a split member's placement follows its coordinator's plan, and an ended split says why for a while (Splits)
      if (p.reason === 'split' || (p.split != null && p.state === 'failed')) continue
      if (!seen.has(model) && p.state !== 'planned' && !this.starts.has(model)) {
        this.own.delete(model)
        this.publish()
      }
    }
  }

  /**
   * One round: start what pins and replica demand name this host for, stop idle replicas and
   * (when idleUnloadMs is set) idle models. Each agent decides for itself from the same view, so
   * only the named host acts.
   */
  private async reconcile (): Promise<void> {
    const { clock, config, selfPeerId } = this.c
    const now = clock.now()
    this.splits?.reconcile()
    const { view, peers } = this.c.snapshot()
    const farFuture = now + config.evictDrainMs + 24 * 3600_000
    const background = (model: string, reason: PlacementReason): void => {
      if (this.starts.has(model) || !this.has(model)) return
      this.ensure(model, { signal: NEVER_ABORTED, deadline: farFuture, loadAnyway: false, reason }).catch((err: unknown) => {
        this.log.warn({ model, reason, err: (err as Error).message }, 'model not started')
      })
    }
    // pins
    const runsHere = new Set(this.c.manager.runners().filter((r) => r.state !== 'failed' && r.state !== 'stopped').map((r) => r.model))
    for (const pin of this.effectivePins()) {
      if (runsHere.has(pin.model)) continue
      if (pin.host === selfPeerId) background(pin.model, 'pin')
      else if (pin.host == null && !runsAnywhere(view, pin.model)) {
        const plan = planCold(pin.model, view, { ctxSize: this.c.ctxSize })
        if (plan.ok && plan.peerId === selfPeerId) background(pin.model, 'pin')
        else if (!plan.ok && plan.code === 'INSUFFICIENT_MEMORY' && this.splits != null) {
          const split = planSplit(pin.model, view, { ctxSize: this.c.ctxSize })
          if (split.ok && split.coordinator === selfPeerId) background(pin.model, 'pin')
        }
      }
    }
    // replicas, and stopping idle ones (and, with idleUnloadMs, idle models): own runners only
    const input = { view, peers, config, now, ctxSize: this.c.ctxSize }
    const decision = decideReplicas(input, this.replicas)
    this.replicas = decision.state
    for (const s of decision.start) if (s.peerId === selfPeerId) background(s.model, 'replica')
    const down = scaleDown(input, this.idle)
    const unload = idleUnload(input, down.state)
    this.idle = unload.state
    for (const runnerId of new Set([...down.stop, ...unload.stop])) {
      await this.evict(runnerId).catch((err: unknown) => { this.log.warn({ runner: runnerId, err: (err as Error).message }, 'idle model not stopped') })
    }
  }

  /** Pins or unpins `model` (on `host`, a peer id; anywhere when absent): written into this agent's pins entry. */
  setPin (model: string, host: string | undefined, pinned: boolean): EffectivePin[] {
    this.writePins([{ model, ...(host != null ? { host } : {}), pinned, at: this.c.clock.now() }])
    return this.effectivePins()
  }

  private writePins (changes: Array<{ model: string, host?: string, pinned: boolean, at: number }>): void {
    const { doc, selfPeerId, clock } = this.c
    const mine = doc.pins().get(selfPeerId)?.pins ?? []
    const key = (p: { model: string, host?: string }): string => `${p.model}\u0000${p.host ?? ''}`
    const next = new Map(mine.map((p) => [key(p), p]))
    for (const ch of changes) next.set(key(ch), ch)
    doc.setOwn('pins', { peerId: selfPeerId, pins: [...next.values()], updatedAt: clock.now() })
  }

  /** This host's placements, as its entry says, with the steps of each one's last start. */
  placements (): LocalPlacement[] {
    return [...this.own.values()].map((p) => {
      const t = this.timings.get(p.model)
      const tunnels = this.splits?.traffic(p.model) ?? []
      return { ...p, ...(t != null ? { timings: { ...t } } : {}), ...(tunnels.length > 0 ? { tunnels } : {}) }
    })
  }

  private set (model: string, p: Placement): void {
    this.own.set(model, p)
    this.publish()
  }

  private update (model: string, change: Partial<Placement>): void {
    const p = this.own.get(model)
    if (p == null) return
    const next: Placement = { ...p, ...change }
    if (next.state !== 'loading') delete next.progress
    if (next.state !== 'failed') delete next.error
    if (next.state !== p.state) next.since = this.c.clock.now()
    if (JSON.stringify(next) === JSON.stringify(p)) return
    this.own.set(model, next)
    this.publish()
  }

  /** Writes this host's placements entry once per turn of the event loop, however many changed. */
  private publish (): void {
    if (this.publishQueued) return
    this.publishQueued = true
    queueMicrotask(() => {
      this.publishQueued = false
      if (this.stopped) return
      this.c.doc.setOwn('placements', { peerId: this.c.selfPeerId, placements: [...this.own.values()], updatedAt: this.c.clock.now() })
    })
  }
}

/** Poll period while a runner drains before its eviction, ms. */
const DRAIN_POLL_MS = 50

const NEVER_ABORTED: Signal = new AbortController().signal

function runsAnywhere (view: PlacementView, model: string): boolean {
  for (const n of view.nodes) {
    if (n.peerId !== view.selfPeerId && !view.reachable.has(n.peerId)) continue
    if (n.runners.some((r) => r.model === model && runnerServes(r) && r.state !== 'failed' && r.state !== 'stopped')) return true
  }
  for (const [peer, e] of view.placements) {
    if (peer !== view.selfPeerId && !view.reachable.has(peer)) continue
    if (e.placements.some((p) => p.model === model && servesRequests(p) && (p.state === 'planned' || p.state === 'loading' || p.state === 'ready'))) return true
  }
  return false
}
