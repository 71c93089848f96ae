import type { FastifyInstance } from 'fastify'
import { Counter, Gauge, Histogram, Registry } from 'prom-client'
import { PlacementStates, RunnerStates } from '@llmesh/protocol'
import { STRATEGIES } from '@llmesh/scheduler'
import type { RequestEvent } from '../request-events.js'
import type { AgentPort, MeshView } from './port.js'

/**
 * Most distinct model label values one agent's metrics ever use; the rest are 'other'. Only
 * models the view lists get a label of their own (a client may name any model). @default 64
 */
const MAX_MODEL_LABELS = 64
/** Most distinct routing-reason label values; the rest are 'other'. @default 32 */
const MAX_REASON_LABELS = 32
/** Most runners described per scrape (a host runs a handful). @default 64 */
const MAX_RUNNER_SERIES = 64
/** Most keys of one by-reason counter of the mesh's stats taken per scrape. @default 32 */
const MAX_STATS_REASONS = 32
/** A request for a model the known set lacks re-reads the view at most this often, ms. @default 1000 */
const MODEL_SET_REFRESH_MS = 1000
/** Buckets of time to first token, seconds. @default 0.01 … 60 */
const TTFT_BUCKETS_SECONDS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]
/** Buckets of whole-request time, seconds. @default 0.05 … 600 */
const DURATION_BUCKETS_SECONDS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600]

const OTHER = 'other'
const PEER_STATES = ['alive', 'suspect', 'dead', 'left', 'unknown'] as const

export interface AgentMetrics {
  readonly registry: Registry
  /** stops listening to the request events */
  close: () => void
}

/**
 * The agent's Prometheus metrics over `port`, in a registry of their own (two agents in one
 * process keep theirs apart). Counters and histograms of requests come from the request events
 * as they end; everything else is read from the port when scraped (one read of each port
 * figure per scrape). Labels are bounded: no request ids or prompts; models only those the view
 * lists, at most MAX_MODEL_LABELS; strategies, states, outcomes and reasons from closed lists.
 */
export function createAgentMetrics (port: AgentPort, opts: { now?: () => number } = {}): AgentMetrics {
  const now = opts.now ?? Date.now
  const registry = new Registry()
  const registers = [registry]

  // ---- one read of each port figure per scrape: every collect() of a scrape runs in one tick
  const view = perScrape(() => port.view())
  const stats = perScrape(() => port.meshStats())
  const runners = perScrape(() => port.localRunners().slice(0, MAX_RUNNER_SERIES))
  const admission = perScrape(() => new Map(port.admission().map((a) => [a.runnerId, a])))
  const placements = perScrape(() => port.localPlacements())

  // ---- bounded labels
  const models = modelLabels(() => view(), now)
  const reasons = new BoundedLabels(MAX_REASON_LABELS)
  const strategies = new Set<string>(STRATEGIES)

  // ---- requests, from the events
  const requests = new Counter({
    name: 'llmesh_requests_total',
    help: 'Requests taken on this agent\'s API, once ended, by model, strategy, outcome (ok, aborted, or the error code) and role (local: served by this host\'s runner; forwarded: by a peer; none: ended before any host answered).',
    labelNames: ['model', 'strategy', 'outcome', 'role'] as const,
    registers
  })
  const duration = new Histogram({
    name: 'llmesh_request_duration_seconds',
    help: 'Time from a request to its end, seconds.',
    labelNames: ['model', 'role'] as const,
    buckets: DURATION_BUCKETS_SECONDS,
    registers
  })
  const ttft = new Histogram({
    name: 'llmesh_request_ttft_seconds',
    help: 'Time from a request to the first chunk of its response (the first token of a stream), seconds.',
    labelNames: ['model', 'role'] as const,
    buckets: TTFT_BUCKETS_SECONDS,
    registers
  })
  const failovers = new Counter({
    name: 'llmesh_request_failovers_total',
    help: 'Routing rounds beyond the first of a request (another host tried, or a wait for a slot), by model.',
    labelNames: ['model'] as const,
    registers
  })
  const routeReasons = new Counter({
    name: 'llmesh_route_reasons_total',
    help: 'Decisions that sent requests to the host they went to, by reason (e.g. local, remote, cache=hit, cache=moved, cache=new, cold-start, split, affinity=hit, may-queue).',
    labelNames: ['reason'] as const,
    registers
  })

  const onRequest = (e: RequestEvent): void => {
    const model = models.label(e.model)
    const role = e.target == null ? 'none' : e.local ? 'local' : 'forwarded'
    const outcome = e.outcome === 'error' ? (e.code != null ? e.code.toLowerCase() : 'error') : e.outcome
    requests.inc({ model, strategy: strategies.has(e.strategy) ? e.strategy : OTHER, outcome, role })
    if (Number.isFinite(e.durationMs)) duration.observe({ model, role }, Math.max(0, e.durationMs) / 1000)
    if (e.ttftMs != null && Number.isFinite(e.ttftMs)) ttft.observe({ model, role }, Math.max(0, e.ttftMs) / 1000)
    if (e.attempts > 1) failovers.inc({ model }, e.attempts - 1)
    for (const r of new Set(e.reasons.map(reasonKind))) if (r != null) routeReasons.inc({ reason: reasons.label(r) })
  }
  const unsubscribe = port.requests.on(onRequest)

  // ---- this host's runners
  const runnerLabels = ['runner', 'model', 'kind'] as const
  new Gauge({
    name: 'llmesh_runner_slots',
    help: 'Parallel request slots of a local runner.',
    labelNames: runnerLabels,
    registers,
    collect () {
      this.reset()
      for (const r of runners()) this.set(runnerLabel(r), admission().get(r.id)?.slots ?? r.slots)
    }
  })
  new Gauge({
    name: 'llmesh_runner_slots_busy',
    help: 'Slots of a local runner serving a request now.',
    labelNames: runnerLabels,
    registers,
    collect () {
      this.reset()
      for (const r of runners()) this.set(runnerLabel(r), admission().get(r.id)?.busy ?? 0)
    }
  })
  new Gauge({
    name: 'llmesh_runner_queue_depth',
    help: 'Requests waiting for a slot of a local runner.',
    labelNames: runnerLabels,
    registers,
    collect () {
      this.reset()
      for (const r of runners()) this.set(runnerLabel(r), admission().get(r.id)?.queueDepth ?? 0)
    }
  })
  new Gauge({
    name: 'llmesh_runner_state',
    help: 'State of a local runner: 1 for the state it is in, 0 for the others.',
    labelNames: [...runnerLabels, 'state'] as const,
    registers,
    collect () {
      this.reset()
      for (const r of runners()) for (const s of RunnerStates) this.set({ ...runnerLabel(r), state: s }, r.state === s ? 1 : 0)
    }
  })
  new Gauge({
    name: 'llmesh_runner_gave_up',
    help: 'Whether a local runner failed for good (crash loop, restarts off): 1, else 0.',
    labelNames: runnerLabels,
    registers,
    collect () {
      this.reset()
      for (const r of runners()) this.set(runnerLabel(r), r.gaveUp === true ? 1 : 0)
    }
  })
  mirroredCounter(registry, 'llmesh_runner_restarts_total', 'Restarts of a local runner after a crash, failed health checks or stalls.', runnerLabels, (set) => {
    for (const r of runners()) set(runnerLabel(r), r.restarts ?? 0)
  })
  mirroredCounter(registry, 'llmesh_runner_stalls_total', 'Streams of a local runner that stalled (no token within the stall timeout).', runnerLabels, (set) => {
    for (const r of runners()) set(runnerLabel(r), r.stalls)
  })
  const admissionResults = { granted: 'granted', queued: 'queued', busyAnswers: 'busy', rejected: 'rejected', expired: 'expired' } as const
  mirroredCounter(registry, 'llmesh_runner_tokens_total', 'Tokens of a local runner where its answers tell them (llama-server), by type: generated, prompt (evaluated), cached (prompt tokens found in its KV cache).', [...runnerLabels, 'type'], (set) => {
    for (const r of runners()) {
      const a = admission().get(r.id)
      if (a == null) continue
      set({ ...runnerLabel(r), type: 'generated' }, a.tokensOut)
      set({ ...runnerLabel(r), type: 'prompt' }, a.promptTokens)
      set({ ...runnerLabel(r), type: 'cached' }, a.cachedTokens)
    }
  })
  mirroredCounter(registry, 'llmesh_runner_admissions_total', 'Admission decisions of a local runner, for requests of this agent and of peers: granted a slot, queued, answered busy, rejected (queue full), expired in the queue.', [...runnerLabels, 'result'], (set) => {
    for (const r of runners()) {
      const a = admission().get(r.id)
      if (a == null) continue
      for (const [key, result] of Object.entries(admissionResults)) set({ ...runnerLabel(r), result }, a[key as keyof typeof admissionResults])
    }
  })

  // ---- this host's throughput, as its heartbeats tell it
  new Gauge({
    name: 'llmesh_host_tokens_per_second',
    help: 'Generated tokens per second of this host\'s runners, moving average over recent requests (0 before any).',
    registers,
    collect () { this.set(selfNode(view())?.metrics?.tokensPerSec ?? 0) }
  })
  new Gauge({
    name: 'llmesh_host_prefill_tokens_per_second',
    help: 'Prompt tokens evaluated per second by this host\'s runners, moving average over long prompts (0 before any).',
    registers,
    collect () { this.set(selfNode(view())?.metrics?.prefillTokensPerSec ?? 0) }
  })

  // ---- membership
  const seen = new Map<string, string>()
  const transitions = new Counter({
    name: 'llmesh_peer_transitions_total',
    help: 'Membership state changes of peers as this agent saw them, between two scrapes, by from and to state.',
    labelNames: ['from', 'to'] as const,
    registers,
    // the counter and the gauge below share one diff per scrape, whichever is collected first
    collect () { membership() }
  })
  const membership = perScrape(() => {
    const counts = new Map<string, number>(PEER_STATES.map((s) => [s, 0]))
    const current = new Map<string, string>()
    for (const n of view().nodes) {
      if (n.self) continue
      const state = (PEER_STATES as readonly string[]).includes(n.state) ? n.state : 'unknown'
      counts.set(state, (counts.get(state) ?? 0) + 1)
      current.set(n.peerId, state)
      const before = seen.get(n.peerId)
      if (before != null && before !== state) transitions.inc({ from: before, to: state })
    }
    seen.clear()
    for (const [p, s] of current) seen.set(p, s)
    return counts
  })
  new Gauge({
    name: 'llmesh_peers',
    help: 'Peers of the cluster document (this agent excluded), by membership state as this agent sees them.',
    labelNames: ['state'] as const,
    registers,
    collect () {
      for (const [state, count] of membership()) this.set({ state }, count)
    }
  })

  // ---- the mesh layer's counters
  const num = (key: string): number => { const v = stats()[key]; return typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : 0 }
  const byReason = (key: string): Array<[string, number]> => {
    const v = stats()[key]
    if (v == null || typeof v !== 'object') return []
    return Object.entries(v as Record<string, unknown>)
      .filter((e): e is [string, number] => /^[a-z][a-z0-9_-]{0,63}$/i.test(e[0]) && typeof e[1] === 'number' && Number.isFinite(e[1]) && e[1] >= 0)
      .slice(0, MAX_STATS_REASONS)
  }
  const plain: Array<[string, string, string]> = [
    ['llmesh_heartbeats_sent_total', 'Heartbeats this agent sent.', 'heartbeatsSent'],
    ['llmesh_heartbeats_received_total', 'Heartbeats this agent received and took.', 'heartbeatsReceived'],
    ['llmesh_heartbeats_dropped_total', 'Heartbeats received and dropped (stale, malformed, from an unknown peer).', 'heartbeatsDropped'],
    ['llmesh_heartbeats_rate_limited_total', 'Heartbeats dropped because their peer sent too many.', 'heartbeatsRateLimited'],
    ['llmesh_gossip_syncs_total', 'Cluster document syncs with a peer.', 'syncs'],
    ['llmesh_peer_identifies_total', 'Identify exchanges completed (new connections, identify pushes).', 'identified'],
    ['llmesh_mesh_handler_errors_total', 'Exceptions caught in a handler of peer data (each also logged).', 'handlerErrors'],
    ['llmesh_doc_self_rewrites_total', 'Times this agent rewrote its own record after another wrote over it.', 'selfRewrites'],
    ['llmesh_doc_kept_after_foreign_change_total', 'Records kept after a foreign change to them.', 'keptAfterForeignChange'],
    ['llmesh_doc_pending_dropped_total', 'Pending document updates dropped.', 'pendingDropped']
  ]
  for (const [name, help, key] of plain) mirroredCounter(registry, name, help, [], (set) => { set({}, num(key)) })
  mirroredCounter(registry, 'llmesh_gossip_deltas_total', 'Cluster document updates, by event: published, received, rejected.', ['event'], (set) => {
    set({ event: 'published' }, num('deltasPublished'))
    set({ event: 'received' }, num('deltasReceived'))
    set({ event: 'rejected' }, num('deltasRejected'))
  })
  mirroredCounter(registry, 'llmesh_gossip_bytes_total', 'Bytes of cluster document updates and heartbeats, by direction: sent, received.', ['direction'], (set) => {
    set({ direction: 'sent' }, num('bytesPublished'))
    set({ direction: 'received' }, num('bytesReceived'))
  })
  const reasonCounters: Array<[string, string, string]> = [
    ['llmesh_heartbeat_clamps_total', 'Heartbeat figures held to their bounds, by reason.', 'heartbeatClamps'],
    ['llmesh_infer_refused_total', 'Inbound inference streams from peers refused or cut, by reason.', 'inferRefused'],
    ['llmesh_rpc_tunnel_refused_total', 'llama.cpp RPC tunnel streams refused or cut, by reason.', 'rpcRefused'],
    ['llmesh_doc_updates_rejected_total', 'Cluster document updates rejected, by reason.', 'rejectedUpdates'],
    ['llmesh_doc_invalid_records_total', 'Records of the cluster document found invalid, by reason.', 'invalidRecords']
  ]
  for (const [name, help, key] of reasonCounters) {
    mirroredCounter(registry, name, help, ['reason'], (set) => { for (const [reason, v] of byReason(key)) set({ reason }, v) })
  }
  const plainGauges: Array<[string, string, string]> = [
    ['llmesh_cluster_document_bytes', 'Size of the cluster document, bytes (its encoded snapshot).', 'docBytes'],
    ['llmesh_connections', 'Open libp2p connections.', 'connections'],
    ['llmesh_connected_peers', 'Peers with an open connection.', 'peers']
  ]
  for (const [name, help, key] of plainGauges) {
    new Gauge({ name, help, registers, collect () { this.set(num(key)) } })
  }

  // ---- this host's placements
  new Gauge({
    name: 'llmesh_placements',
    help: 'Placements of this host (models it decided to run), by state.',
    labelNames: ['state'] as const,
    registers,
    collect () {
      const counts = new Map<string, number>(PlacementStates.map((s) => [s, 0]))
      for (const p of placements()) if (counts.has(p.state)) counts.set(p.state, counts.get(p.state)! + 1)
      for (const [state, count] of counts) this.set({ state }, count)
    }
  })
  mirroredCounter(registry, 'llmesh_split_tunnel_bytes_total', 'Bytes the RPC tunnels of split models coordinated here carried to and from their members, by model and direction.', ['model', 'direction'], (set) => {
    const sums = new Map<string, { sent: number, received: number }>()
    for (const p of placements()) {
      if (p.tunnels == null) continue
      const model = models.label(p.model)
      const s = sums.get(model) ?? { sent: 0, received: 0 }
      for (const t of p.tunnels) { s.sent += t.bytesSent; s.received += t.bytesReceived }
      sums.set(model, s)
    }
    for (const [model, s] of sums) {
      set({ model, direction: 'sent' }, s.sent)
      set({ model, direction: 'received' }, s.received)
    }
  })

  function runnerLabel (r: { id: string, model: string, kind: string }): Record<typeof runnerLabels[number], string> {
    return { runner: r.id, model: models.label(r.model), kind: r.kind }
  }

  return { registry, close: unsubscribe }
}

/**
 * `GET /metrics`: the agent's metrics in the Prometheus text format, behind the API's guards
 * (a scraper sends the bearer key like any client).
 */
export function registerMetricsApi (app: FastifyInstance, port: AgentPort): void {
  const metrics = createAgentMetrics(port)
  app.addHook('onClose', async () => { metrics.close() })
  app.get('/metrics', async (_req, reply) => {
    const text = await metrics.registry.metrics()
    return await reply.type(metrics.registry.contentType).send(text)
  })
}

/**
 * `fn`'s value, computed once per tick: prom-client calls every metric's collect() in one
 * synchronous loop, so one scrape reads each port figure once.
 */
function perScrape<T> (fn: () => T): () => T {
  let cached: { v: T } | undefined
  return () => {
    if (cached == null) {
      cached = { v: fn() }
      queueMicrotask(() => { cached = undefined })
    }
    return cached.v
  }
}

/**
 * A counter whose totals another part keeps (the mesh's stats, a runner's restarts): each
 * scrape sets it to them. A total that goes down (a runner or placement gone and back) reads
 * as a counter reset, as Prometheus expects.
 */
function mirroredCounter<L extends string> (registry: Registry, name: string, help: string, labelNames: readonly L[], read: (set: (labels: Record<L, string>, value: number) => void) => void): void {
  new Counter({
    name,
    help,
    labelNames,
    registers: [registry],
    collect () {
      this.reset()
      read((labels, value) => { if (Number.isFinite(value) && value >= 0) this.inc(labels, value) })
    }
  })
}

function selfNode (v: MeshView): MeshView['nodes'][number] | undefined {
  return v.nodes.find((n) => n.self)
}

/**
 * The decision a route reason names, or undefined for a figure or a sentence: a plain word
 * (cold-start, split, local, may-queue) or `kind=word` (cache=hit, speed=prior, strategy=…,
 * `cache=moved(from …)` as cache=moved) is one; a figure (cost=120ms, load=1/2) or a trail
 * sentence (which may name a peer) is not counted.
 */
export function reasonKind (reason: string): string | undefined {
  const m = /^([a-z][a-z0-9-]{0,31})(?:=([a-z][a-z-]{0,31})(?:\(.*)?)?$/.exec(reason)
  if (m == null) return undefined
  return m[2] != null ? `${m[1]}=${m[2]}` : m[1]!
}

/** Label values admitted in order of first use, at most `max`; later ones are 'other'. */
class BoundedLabels {
  private readonly used = new Set<string>()
  constructor (private readonly max: number) {}
  label (value: string, admissible = true): string {
    if (this.used.has(value)) return value
    if (!admissible || value === OTHER || this.used.size >= this.max) return OTHER
    this.used.add(value)
    return value
  }
}

/**
 * The model label: a model the view lists (a host's model, runner or placement), at most
 * MAX_MODEL_LABELS of them; any other name is 'other'. The set of listed models is re-read
 * when a name is not in it, at most every MODEL_SET_REFRESH_MS.
 */
function modelLabels (view: () => MeshView, now: () => number): { label: (model: string) => string } {
  const bounded = new BoundedLabels(MAX_MODEL_LABELS)
  let known = new Set<string>()
  let readAt = -Infinity
  return {
    label (model) {
      if (!known.has(model) && now() - readAt >= MODEL_SET_REFRESH_MS) {
        readAt = now()
        const v = view()
        known = new Set([
          ...v.nodes.flatMap((n) => [...n.models.map((m) => m.name), ...n.runners.map((r) => r.model)]),
          ...v.placements.map((p) => p.model)
        ])
      }
      return bounded.label(model, known.has(model))
    }
  }
}
