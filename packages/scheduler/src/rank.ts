import { runnerServes, servesRequests, type NodeRecord, type PlacementsEntry, type RunnerInfo } from '@llmesh/protocol'
import type { LoadEstimate, RankedTarget, RankInput, RankResult, RoundRobinState, SkippedTarget, TargetMetrics } from './cluster-view.js'
import { AFFINITY_MAX_LOAD, CACHE_MAX_QUEUE_PER_SLOT, CACHE_MIN_COST_SHARE, DEFAULT_PRIORITY, METRICS_STALE_MS, PERFORMANCE_MAX_TIE_BAND, PERFORMANCE_TIE_BAND } from './constants.js'
import { estimateLoad, isFresh, nonNegative } from './load.js'
import { cacheSavingMs, performanceScore, priorsOf, speedOf, type PerformanceInit } from './performance.js'
import { planCold, type ColdPlan, type PlacementView } from './placement/plan.js'
import { planSplit } from './placement/split.js'
import { rendezvousOrder } from './rendezvous.js'
import { DEFAULT_STRATEGY, type Strategy } from './strategy.js'

/** Tuning of `rank()`; every field defaults to the constant of the same name. */
export interface RankTuning extends PerformanceInit {
  /** @default 1.0 (see AFFINITY_MAX_LOAD) */
  affinityMaxLoad?: number
  /** @default 2000 ms (see METRICS_STALE_MS) */
  metricsStaleMs?: number
  /** @default 0.1 (see PERFORMANCE_TIE_BAND) */
  performanceTieBand?: number
  /** @default 0.5 (see PERFORMANCE_MAX_TIE_BAND) */
  performanceMaxTieBand?: number
  /** @default 8 (see PREFILL_TO_DECODE_SPEED) */
  prefillToDecodeSpeed?: number
  /** @default 1 (see CACHE_MAX_QUEUE_PER_SLOT) */
  cacheMaxQueuePerSlot?: number
}

interface Candidate {
  peerId: string
  runnerId: string
  local: boolean
  cold: boolean
  halfOpen: boolean
  own: number
  metrics: TargetMetrics | undefined
  fresh: boolean
  load: LoadEstimate
  /** slots of the model's ready runners in the node record: the rendezvous weight */
  modelSlots: number
  /** why it is a candidate though it has no ready runner */
  notes: string[]
  coldStart?: RankedTarget['coldStart']
}

interface Scored {
  c: Candidate
  score: number
  /** what the order compares; the score unless near scores count as equal */
  key?: number
  reasons: string[]
  /** the host holding the conversation's cache, worth its wait (see byPerformance): ordered with the free hosts */
  cacheWins?: boolean
}

/** A loaded runner with a slot free, as far as this router knows: what every strategy fills first. */
const hasFreeSlot = (c: { cold: boolean, load: LoadEstimate }): boolean => !c.cold && c.load.freeSlots > 0
const isReady = (r: RunnerInfo): boolean => r.state === 'ready' || r.state === 'busy'
const isCold = (r: RunnerInfo): boolean => r.state === 'starting' || r.state === 'loading' || r.state === 'stopped'
const isLoading = (r: RunnerInfo): boolean => r.state === 'starting' || r.state === 'loading'

/** `peerId`'s placement of `model` that is planned or loading and will take requests, if any */
function pendingPlacement (placements: ReadonlyMap<string, PlacementsEntry> | undefined, peerId: string, model: string): { runnerId?: string } | undefined {
  return placements?.get(peerId)?.placements.find((p) => p.model === model && servesRequests(p) && (p.state === 'planned' || p.state === 'loading'))
}

/**
 * Ranks the hosts that can serve a request, best first, each with the reasons it is where it
 * is. Pure: the same input gives the same output; randomness and the clock are injected.
 *
 * Candidates: the own host and the reachable ones, with a ready runner of the model (or, with
 * `allowCold`, one still loading), not excluded by the request (already tried) and with a
 * circuit that is not open. One target per host: its ready runner of the model with the most
 * slots (the target may still pick another). Load is per host (its runners share its GPUs),
 * see load.ts.
 *
 * Models on demand: when no reachable host has a ready runner of the model (tried or not),
 * the hosts starting it (a runner starting or loading, or a placement planned or loading)
 * are the candidates, cold, with the reason 'cold: loading': requests wait for the start
 * under way instead of starting another. When no reachable host is starting it either,
 * `planCold` names ONE host with the file, the same at every entry that holds the same
 * records (two entries asking at once start it once), and it is the only target, with the
 * reasons 'cold-start' and the plan's. A model that fits no single host is split by block
 * over several (`planSplit`): the target is its coordinator (the host with the file and the most
 * room), with the reasons 'cold-start', 'split' and the plan's; a model that fits neither way
 * answers INSUFFICIENT_MEMORY with the figures per host (unless `loadAnyway`, which loads it
 * whole on planCold's host). Hosts already tried or with an open circuit are left out of the
 * plan. rpc-server runners and split members' placements never take requests.
 *
 * Every strategy then orders within two groups: hosts with a free slot (as far as this router
 * knows) come before hosts without one, and loaded runners before cold ones, so a router never
 * sends a request to a known-full host while another has room. Ties go to the local host, then
 * to the spread order (see `spreadKeys`: routers that receive requests in the same instant,
 * before any claim of the others reached them, start at different hosts; this replaced a
 * random tie-break, which let such routers collide more often than not). The candidates are
 * still shuffled by the injected random source first: that is the `random` strategy's order.
 * prefix-affinity puts its rendezvous host first whatever the groups, as long as that host is
 * not saturated.
 */
export function rank (input: RankInput, tuning: RankTuning = {}): RankResult {
  const { request, selfPeerId } = input
  const strategy = request.strategy ?? input.defaultStrategy ?? DEFAULT_STRATEGY
  const exclude = new Set(request.exclude ?? [])
  const staleMs = tuning.metricsStaleMs ?? METRICS_STALE_MS
  const available = new Set<string>()
  const skipped: SkippedTarget[] = []
  const candidates: Candidate[] = []
  const seen = new Set<string>()
  let servedAnywhere = false
  const isReachable = (peerId: string): boolean => peerId === selfPeerId || input.reachable.has(peerId)
  // a ready copy on a reachable host, tried or not: then nothing waits for a load or starts one
  const warm = input.view.nodes.some((n) => isReachable(n.peerId) && n.runners.some((r) => r.model === request.model && runnerServes(r) && isReady(r)))
  const placements = input.view.placements
  let loadingSomewhere = false

  for (const node of input.view.nodes) {
    if (seen.has(node.peerId)) continue
    seen.add(node.peerId)
    const local = node.peerId === selfPeerId
    const reachable = isReachable(node.peerId)
    if (reachable) {
      for (const m of node.models) available.add(m.name)
      for (const r of node.runners) if (runnerServes(r)) available.add(r.model)
    }
    const runners = node.runners.filter((r) => r.model === request.model && runnerServes(r))
    const planned = warm ? undefined : pendingPlacement(placements, node.peerId, request.model)
    if (runners.length === 0 && planned == null) continue
    servedAnywhere = true
    if (reachable && !warm && (planned != null || runners.some(isLoading))) loadingSomewhere = true
    const skip = (reason: SkippedTarget['reason']): void => { skipped.push({ peerId: node.peerId, reason }) }
    if (!reachable) { skip('unreachable'); continue }
    if (exclude.has(node.peerId)) { skip('excluded'); continue }
    const circuit = input.circuits?.get(node.peerId) ?? 'closed'
    if (circuit === 'open') { skip('circuit-open'); continue }
    const ready = runners.filter(isReady).sort((a, b) => b.slots - a.slots)
    const loading = !warm && ready.length === 0 ? runners.find(isLoading) : undefined
    const cold = request.allowCold === true && ready.length === 0 ? runners.find(isCold) : undefined
    const runner = ready[0] ?? loading ?? cold
    if (runner == null && planned == null) { skip('not-ready'); continue }
    const metrics = input.view.metrics.get(node.peerId)
    const own = nonNegative(input.inflight.get(node.peerId))
    const recordSlots = hostSlots(node) || (runner?.slots ?? 0)
    candidates.push({
      peerId: node.peerId,
      runnerId: runner?.id ?? planned?.runnerId ?? '',
      local,
      cold: ready.length === 0,
      halfOpen: circuit === 'half-open',
      own,
      metrics,
      fresh: isFresh(metrics, input.now, staleMs),
      load: estimateLoad({ own, metrics, recordSlots, now: input.now, staleMs }),
      modelSlots: ready.reduce((n, r) => n + r.slots, 0) || (runner?.slots ?? 0),
      notes: loading != null || runner == null ? ['cold: loading'] : []
    })
  }

  const rr: RoundRobinState = input.roundRobin ?? new Map()
  if (candidates.length === 0 && !warm && !loadingSomewhere) {
    const plan = planColdStart(input, exclude)
    const split = !plan.ok && plan.code === 'INSUFFICIENT_MEMORY' ? planSplit(request.model, placementView(input), splitOptions(input, exclude)) : undefined
    // the one host planned to start the model: the only target, cold
    const planned = (peerId: string, notes: string[], coldStart: NonNullable<Candidate['coldStart']>): Candidate => {
      const metrics = input.view.metrics.get(peerId)
      const own = nonNegative(input.inflight.get(peerId))
      const node = input.view.nodes.find((n) => n.peerId === peerId)!
      return {
        peerId,
        runnerId: '',
        local: peerId === selfPeerId,
        cold: true,
        halfOpen: input.circuits?.get(peerId) === 'half-open',
        own,
        metrics,
        fresh: isFresh(metrics, input.now, staleMs),
        load: estimateLoad({ own, metrics, recordSlots: hostSlots(node), now: input.now, staleMs }),
        modelSlots: 0,
        notes: ['cold-start', ...notes],
        coldStart
      }
    }
    if (split?.ok === true) {
      const members = split.members.map((m) => ({ peerId: m.peerId, layers: m.layers }))
      candidates.push(planned(split.coordinator, ['split', ...split.reasons], { footprintBytes: split.footprintBytes, evictBytes: 0, split: members }))
    } else if (split?.ok === false && split.code === 'INSUFFICIENT_MEMORY' && split.splittable) {
      const { code, message, needBytes } = split
      const largestFreeBytes = Math.max(0, ...split.hosts.map((h) => h.freeBytes))
      return { ok: false, code, message, ...(needBytes != null ? { needBytes } : {}), largestFreeBytes, available: [...available].sort(), skipped, roundRobin: rr }
    } else if (plan.ok) {
      candidates.push(planned(plan.peerId, plan.reasons, { footprintBytes: plan.footprintBytes, evictBytes: plan.evictBytes }))
    } else if (plan.code === 'INSUFFICIENT_MEMORY') {
      const { code, message, needBytes, largestFreeBytes } = plan
      return { ok: false, code, message, needBytes, largestFreeBytes, available: [...available].sort(), skipped, roundRobin: rr }
    }
  }
  if (candidates.length === 0) {
    return { ok: false, ...noCandidate(request.model, servedAnywhere, skipped), available: [...available].sort(), skipped, roundRobin: rr }
  }

  // Fisher-Yates with the injected source: the stable sorts below keep this order among ties
  for (let i = candidates.length - 1; i > 0; i--) {
    const j = Math.min(i, Math.floor(input.random() * (i + 1)))
    const t = candidates[i]!
    candidates[i] = candidates[j]!
    candidates[j] = t
  }

  // computed once, and only for the strategies that order by score (random and round-robin
  // have their own order)
  let spread: Map<string, number> | undefined
  const order = (items: Scored[], performance: boolean): Scored[] =>
    orderBy(items, performance, spread ??= spreadKeys(input.view.nodes, selfPeerId, request.model, candidates))
  const priority = request.priority ?? DEFAULT_PRIORITY
  const priors = priorsOf(candidates.map((c) => c.metrics), tuning)
  const tieBand = tuning.performanceTieBand ?? PERFORMANCE_TIE_BAND
  const maxTieBand = Math.max(tieBand, tuning.performanceMaxTieBand ?? PERFORMANCE_MAX_TIE_BAND)
  const anyFresh = candidates.some((c) => c.fresh)
  // the conversation's key, when the request has one
  const conversation = request.prefixKey != null && request.prefixKey !== '' ? request.prefixKey : undefined
  const holder = conversation != null ? cacheHolder(conversation, input) : undefined
  const byPerformance = (): Scored[] => {
    // hosts with a free loaded slot: bands on a log scale, counted from the best of them (those
    // within the band of the best are equal to it; then the less loaded, the local, the spread
    // order decide); full or cold hosts keep their exact cost, there a few percent are seconds
    // of waiting. The band is tieBand, or wider when single requests' times vary more than
    // that on these hosts (see PERFORMANCE_MAX_TIE_BAND).
    let noise = 0
    const scored: Scored[] = candidates.map((c) => {
      const s = performanceScore({ local: c.local, cold: c.cold, load: c.load, metrics: c.metrics, fresh: c.fresh }, { priority, expectedTokens: request.expectedTokens, priors, anyFresh }, tuning)
      if (hasFreeSlot(c)) noise = Math.max(noise, s.relDev)
      return { c, score: s.cost, reasons: s.reasons }
    })
    // Cache affinity: the host holding the conversation's KV cache costs the prefill it saves
    // less, and it keeps the conversation while its queue is short (at most
    // CACHE_MAX_QUEUE_PER_SLOT requests waiting per slot: about one service time) or while its
    // cost, so lowered, is the lowest; there the request may wait for a slot instead of being
    // answered busy. A conversation thus moves only when its host has a long queue, and then
    // once: the host that serves it next holds it from then on.
    const home = holder != null ? scored.find((x) => x.c.peerId === holder.peerId && !x.c.cold) : undefined
    if (home != null) {
      // the tokens the host said it holds; the request's own estimate when only this router's memory knows
      const saving = cacheSavingMs(holder!.tokens > 0 ? holder!.tokens : request.promptTokens, home.c.metrics, priors, tuning.prefillToDecodeSpeed)
      const cost = Math.max(home.score - saving, home.score * CACHE_MIN_COST_SHARE)
      home.reasons.push(`cache-saves=${Math.round(saving)}ms`)
      const freeCosts = scored.filter((x) => x !== home && hasFreeSlot(x.c)).map((x) => x.score)
      const shortQueue = home.c.load.queued <= (tuning.cacheMaxQueuePerSlot ?? CACHE_MAX_QUEUE_PER_SLOT) * home.c.load.slots
      home.score = cost
      home.cacheWins = shortQueue || freeCosts.length === 0 || cost <= Math.min(...freeCosts)
    }
    const band = tieBand > 0 ? Math.min(maxTieBand, Math.max(tieBand, noise)) : 0
    // A conversation no host is known to hold goes to the first host of its rendezvous order
    // that has a free slot: every entry picks the same one without a word, so its next turn
    // finds its cache even when it comes through another entry before any heartbeat says where
    // it went. Spread is by hash, bounded by the free slot (a full host passes the conversation
    // on to the next of its order).
    const newHomeCandidate = holder == null && conversation != null
      ? rendezvousOrder(conversation, candidates.filter(hasFreeSlot), (c) => c.modelSlots)[0]
      : undefined
    const newHome = newHomeCandidate != null ? scored.find((x) => x.c === newHomeCandidate) : undefined
    if (newHome != null) newHome.reasons.push('cache-home=rendezvous')
    const homeFirst = (xs: Scored[]): Scored[] => {
      const i = xs.findIndex((x) => x.cacheWins === true || (newHome != null && x.c === newHome.c))
      if (i > 0) xs.unshift(...xs.splice(i, 1))
      return xs
    }
    if (band === 0) return homeFirst(order(scored, true))
    const best = Math.min(...scored.filter((x) => hasFreeSlot(x.c)).map((x) => x.score))
    const banded = scored.map((x) => hasFreeSlot(x.c) ? { ...x, key: Math.floor(Math.log(x.score / best) / Math.log1p(band)) } : x)
    if (band > tieBand) for (const x of banded) x.reasons.push(`tie-band=${Math.round(band * 100)}%`)
    return homeFirst(order(banded, true))
  }

  let ranked: Scored[]
  let note: string | undefined
  switch (strategy) {
    case 'performance':
      ranked = byPerformance()
      break
    case 'least-loaded':
      ranked = order(candidates.map((c) => ({ c, score: c.load.load, reasons: [] })), false)
      break
    case 'fastest':
      ranked = order(candidates.map((c) => {
        const s = speedOf(c.metrics, priors, request.expectedTokens, tuning)
        return { c, score: s.serviceMs, reasons: [`service=${Math.round(s.serviceMs)}ms`, ...(s.measured ? [] : ['speed=prior'])] }
      }), false)
      break
    case 'random':
      ranked = orderBy(candidates.map((c, i) => ({ c, score: i, reasons: [] })), false, undefined, false)
      break
    case 'round-robin': {
      const sorted = [...candidates].sort((a, b) => cmp(a.peerId, b.peerId))
      const last = rr.get(request.model)
      const start = last == null ? 0 : Math.max(0, sorted.findIndex((c) => c.peerId > last))
      const rotated = [...sorted.slice(start), ...sorted.slice(0, start)]
      ranked = orderBy(rotated.map((c, i) => ({ c, score: i, reasons: [] })), false, undefined, false)
      break
    }
    case 'prefix-affinity': {
      const key = request.prefixKey
      const loaded = candidates.filter((c) => !c.cold)
      if (key == null || key === '' || loaded.length === 0) {
        ranked = byPerformance()
        note = key == null || key === '' ? 'affinity=none(no prefix key)' : 'affinity=none(no loaded host)'
        break
      }
      const top = rendezvousOrder(key, loaded, (c) => c.modelSlots)[0]!
      const maxLoad = tuning.affinityMaxLoad ?? AFFINITY_MAX_LOAD
      ranked = byPerformance()
      if (top.load.load < maxLoad) {
        const i = ranked.findIndex((s) => s.c === top)
        const [hit] = ranked.splice(i, 1)
        hit!.reasons.unshift('affinity=hit')
        ranked.unshift(hit!)
      } else {
        note = `affinity=saturated(${shortId(top.peerId)} load=${top.load.load.toFixed(2)}>=${maxLoad})`
      }
      break
    }
  }

  const targets: RankedTarget[] = ranked.map((s, i) => ({
    peerId: s.c.peerId,
    runnerId: s.c.runnerId,
    local: s.c.local,
    cold: s.c.cold,
    score: s.score,
    load: s.c.load,
    reasons: [
      `strategy=${strategy}`,
      `rank=${i + 1}/${ranked.length}`,
      ...(note != null ? [note] : []),
      `load=${fmt(s.c.load.occupied)}/${s.c.load.slots}`,
      `claims=${fmt(s.c.own)}+${fmt(nonNegative(s.c.metrics?.claims))}`,
      ...(s.c.load.reported ? [`reported=${fmt(nonNegative(s.c.metrics?.slotsBusy))}+${fmt(nonNegative(s.c.metrics?.queueDepth))}q`] : []),
      s.c.local ? 'local' : 'remote',
      ...(s.c.cold ? ['cold'] : []),
      ...s.c.notes,
      ...(s.c.halfOpen ? ['circuit=half-open'] : []),
      ...(conversation != null ? [cacheReason(s.c.peerId, holder, candidates)] : []),
      ...s.reasons
    ],
    ...(s.c.coldStart != null ? { coldStart: s.c.coldStart } : {}),
    // the cache host may make the request wait: another router's requests may have taken the
    // slot this router thinks free, and a busy answer would move the conversation
    ...(s.cacheWins === true ? { waitForCache: true } : {})
  }))
  const allFull = !targets.some(hasFreeSlot)
  const roundRobin = strategy === 'round-robin' ? new Map([...rr, [request.model, targets[0]!.peerId]]) : rr
  return { ok: true, strategy, targets, allFull, skipped, roundRobin }
}

/**
 * The two groups every strategy respects, then the score, then (optionally) the local host,
 * then the spread order, then the shuffled order already in `items`. Performance folds
 * coldness into its score, so it groups by "free loaded slot" only; the others put cold
 * runners last.
 */
function orderBy (items: Scored[], performance: boolean, spread: ReadonlyMap<string, number> | undefined, localFirst = true): Scored[] {
  const group = (c: Candidate): number => hasFreeSlot(c) ? 0 : (performance || !c.cold) ? 1 : 2
  return items.sort((a, b) =>
    group(a.c) - group(b.c) ||
    (a.key ?? a.score) - (b.key ?? b.score) ||
    // within a performance band: the busier host's cost was only banded away
    (a.key != null && b.key != null ? a.c.load.load - b.c.load.load : 0) ||
    (localFirst ? Number(b.c.local) - Number(a.c.local) : 0) ||
    (spread != null ? (spread.get(a.c.peerId) ?? 0) - (spread.get(b.c.peerId) ?? 0) : 0))
}

/**
 * The host holding a conversation's cache: the latest of where this router last sent it and
 * what hosts' heartbeats say they served (a conversation moved by another router is followed
 * once that host reports it).
 */
function cacheHolder (key: string, input: RankInput): { peerId: string, at: number, tokens: number } | undefined {
  let best: { peerId: string, at: number, tokens: number } | undefined
  for (const [peerId, m] of input.view.metrics) {
    const held = m.cache?.get(key)
    if (held != null && (best == null || held.at > best.at)) best = { peerId, at: held.at, tokens: held.tokens }
  }
  const mine = input.affinity?.get(key)
  if (mine != null && (best == null || mine.at > best.at)) {
    // this router sent it there since: the host holds it; how much, from that host's last report
    best = { peerId: mine.peerId, at: mine.at, tokens: input.view.metrics.get(mine.peerId)?.cache?.get(key)?.tokens ?? 0 }
  }
  return best
}

/** `cache=hit` on the host holding the conversation, `cache=moved(from …)` on the others, `cache=new` when none holds it. */
function cacheReason (peerId: string, holder: { peerId: string } | undefined, candidates: readonly Candidate[]): string {
  if (holder == null) return 'cache=new'
  if (holder.peerId === peerId) return 'cache=hit'
  const home = candidates.find((c) => c.peerId === holder.peerId)
  const why = home == null ? 'not a candidate' : home.cold ? 'cold' : `load=${fmt(home.load.occupied)}/${home.load.slots}`
  return `cache=moved(from=${shortId(holder.peerId)}: ${why})`
}

/**
 * The spread tie-break. Routers that receive requests in the same instant all see the same
 * idle hosts, and the claims that would tell them apart are still on the wire; picking at
 * random, three routers with two requests each over three hosts of two slots collide more
 * often than not. Instead each router walks the candidates (in peer-id order) from its own
 * offset: its position among the routers that send this model's requests elsewhere (the
 * nodes of the view without a runner of the model, itself included), or among all nodes when
 * it serves the model itself. N such routers thus fill N different hosts first; with more
 * routers than hosts, some share an offset, and the hosts' "busy" answers sort out the rest.
 */
function spreadKeys (nodes: readonly NodeRecord[], selfPeerId: string, model: string, candidates: readonly Candidate[]): Map<string, number> {
  const serves = (n: NodeRecord): boolean => n.runners.some((r) => r.model === model)
  const self = nodes.find((n) => n.peerId === selfPeerId)
  const pool = self != null && serves(self) ? nodes : nodes.filter((n) => !serves(n))
  const routers = [...new Set([...pool.map((n) => n.peerId), selfPeerId])].sort(cmp)
  const offset = routers.indexOf(selfPeerId)
  const ids = candidates.map((c) => c.peerId).sort(cmp)
  const m = ids.length
  return new Map(ids.map((id, i) => [id, (((i - offset) % m) + m) % m]))
}

/**
 * planCold over the hosts this request may still go to: reachable, not tried, circuit not
 * open. The pins and placements come from the view (none: nothing pinned or planned).
 */
function planColdStart (input: RankInput, exclude: ReadonlySet<string>): ColdPlan {
  return planCold(input.request.model, placementView(input), {
    ...splitOptions(input, exclude),
    ...(input.request.loadAnyway != null ? { loadAnyway: input.request.loadAnyway } : {})
  })
}

function placementView (input: RankInput): PlacementView {
  return {
    selfPeerId: input.selfPeerId,
    nodes: input.view.nodes,
    placements: input.view.placements ?? new Map(),
    pins: input.view.pins ?? [],
    reachable: input.reachable
  }
}

/** Hosts tried or with an open circuit left out; the request's context. */
function splitOptions (input: RankInput, exclude: ReadonlySet<string>): { exclude: string[], ctxSize?: number } {
  const open = [...input.circuits ?? []].filter(([, state]) => state === 'open').map(([peerId]) => peerId)
  return { exclude: [...exclude, ...open], ...(input.request.ctxSize != null ? { ctxSize: input.request.ctxSize } : {}) }
}

/** Slots of all ready runners of a node, whatever their model: they share its GPUs. */
function hostSlots (node: NodeRecord): number {
  return node.runners.filter(isReady).reduce((n, r) => n + nonNegative(r.slots), 0)
}

function noCandidate (model: string, servedAnywhere: boolean, skipped: SkippedTarget[]): { code: 'MODEL_NOT_FOUND' | 'NO_CAPACITY', message: string } {
  if (!servedAnywhere) return { code: 'MODEL_NOT_FOUND', message: `no host in the mesh serves model '${model}'` }
  const has = (r: SkippedTarget['reason']): boolean => skipped.some((s) => s.reason === r)
  if (has('not-ready')) return { code: 'NO_CAPACITY', message: `model '${model}' is still loading` }
  if (has('circuit-open')) return { code: 'NO_CAPACITY', message: `every host serving model '${model}' is failing (circuit open)` }
  if (has('excluded')) return { code: 'NO_CAPACITY', message: `every host serving model '${model}' was tried` }
  return { code: 'NO_CAPACITY', message: `no host serving model '${model}' is reachable` }
}

function cmp (a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

function fmt (n: number): string {
  return Number.isInteger(n) ? String(n) : n.toFixed(1)
}

function shortId (peerId: string): string {
  return peerId.length > 12 ? peerId.slice(-8) : peerId
}

