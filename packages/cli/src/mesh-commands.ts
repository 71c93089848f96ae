import type { MeshView, ViewNode } from '@llmesh/agent'
import type { EffectivePin } from '@llmesh/protocol'
import { apiCall, fetchView, type ApiTarget } from './api-client.js'
import { terminalSafe } from './terminal.js'
import { age, bytes, count, NONE, PLAIN, stateCell, table, type Cell, type Style } from './render.js'

/** A peer's name by peer id, as the view knows it (else the id's tail). */
function namer (view: MeshView): (peerId: string) => string {
  const names = new Map(view.nodes.map((n) => [n.peerId, n.name]))
  return (peerId) => names.get(peerId) ?? `…${peerId.slice(-10)}`
}

/** Self first, then by name: the order of every table. */
function byHost (a: Pick<ViewNode, 'self' | 'name'>, b: Pick<ViewNode, 'self' | 'name'>): number {
  return Number(b.self) - Number(a.self) || a.name.localeCompare(b.name)
}

// ---------------------------------------------------------------- peers

export interface PeerRow {
  name: string
  peerId: string
  self: boolean
  /** membership as the asked agent sees it */
  state: ViewNode['state']
  /** self, connected or unreachable */
  link: 'self' | 'connected' | 'unreachable'
  heartbeatAgeMs: number | null
  version: string
  protocol: number
  /** the host's HTTP API, host:port */
  api: string
  /** the multiaddrs other agents dial */
  addrs: string[]
  /** when its agent started, ms since the epoch (its clock) */
  startedAt: number
}

/** `llmesh peers`: the membership of the mesh, the links and versions. */
export async function peers (target: ApiTarget): Promise<PeerRow[]> {
  return peersOf(await fetchView(target))
}

export function peersOf (view: MeshView): PeerRow[] {
  return [...view.nodes].sort(byHost).map((n) => ({
    name: n.name,
    peerId: n.peerId,
    self: n.self,
    state: n.state,
    link: n.self ? 'self' : n.connected ? 'connected' : 'unreachable',
    heartbeatAgeMs: n.heartbeatAgeMs,
    version: n.version,
    protocol: n.protocol,
    api: n.api,
    addrs: [...n.addrs],
    startedAt: n.startedAt
  }))
}

export function formatPeers (rows: PeerRow[], style: Style = PLAIN): string {
  if (rows.length === 0) return 'no peers'
  const t: Cell[][] = [['NAME', 'PEER', 'STATE', 'LINK', 'HEARD', 'VERSION', 'API', 'ADDRESSES']]
  for (const p of rows) {
    t.push([
      p.self ? `${p.name} (this)` : p.name,
      style.tty ? `…${p.peerId.slice(-10)}` : p.peerId,
      stateCell(p.state),
      stateCell(p.link),
      p.self ? NONE : p.heartbeatAgeMs == null ? { text: 'never', tone: 'bad' } : age(p.heartbeatAgeMs, style),
      `${p.version}/${p.protocol}`,
      p.api,
      p.addrs.join(',') || NONE
    ])
  }
  return table(t, style)
}

// ---------------------------------------------------------------- models

/** Where a model is placed: one host's placement of it. */
export interface ModelPlacement {
  host: string
  state: string
  reason: string
  /** while loading, 0..1 */
  progress?: number
  /** memory it takes there as planned, bytes */
  footprintBytes?: number
  error?: string
}

export interface ModelRow {
  name: string
  /**
   * ready: a runner of it is ready somewhere; loading / planned / failed: its placements' best
   * state; available: on disk only
   */
  state: string
  sizeBytes: number | null
  quantization: string | null
  /** context it was trained for, tokens */
  contextLength: number | null
  architecture: string | null
  parameters: number | null
  /** hosts that have its file (or hold it in their Ollama store: `source`) */
  onDisk: Array<{ host: string, source: string }>
  placements: ModelPlacement[]
  /** a split model: the coordinator and the blocks each host holds */
  split: { coordinator: string, hosts: Array<{ host: string, layers: number, bytes: number }> } | null
  /** hosts it is pinned to ('*': anywhere) */
  pins: string[]
}

const STATE_RANK = ['ready', 'loading', 'planned', 'evicting', 'failed', 'available']

/** `llmesh models`: every model of the mesh, where it is on disk and where it runs. */
export async function models (target: ApiTarget): Promise<ModelRow[]> {
  return modelsOf(await fetchView(target))
}

export function modelsOf (view: MeshView): ModelRow[] {
  const name = namer(view)
  const rows = new Map<string, ModelRow>()
  const row = (model: string): ModelRow => {
    let r = rows.get(model)
    if (r == null) {
      r = { name: model, state: 'available', sizeBytes: null, quantization: null, contextLength: null, architecture: null, parameters: null, onDisk: [], placements: [], split: null, pins: [] }
      rows.set(model, r)
    }
    return r
  }
  const ready = new Set<string>()
  for (const n of [...view.nodes].sort(byHost)) {
    for (const m of n.models) {
      const r = row(m.name)
      r.onDisk.push({ host: n.name, source: m.source ?? 'file' })
      r.sizeBytes ??= m.sizeBytes
      r.quantization ??= m.quantization ?? null
      r.contextLength ??= m.contextLength ?? null
      r.architecture ??= m.architecture ?? null
      r.parameters ??= m.parameters ?? null
    }
    for (const run of n.runners) if (run.state === 'ready' || run.state === 'busy') ready.add(run.model)
  }
  for (const p of view.placements ?? []) {
    const r = row(p.model)
    r.placements.push({
      host: name(p.peerId),
      state: p.state,
      reason: p.reason,
      ...(p.progress != null ? { progress: p.progress } : {}),
      ...(p.footprintBytes != null ? { footprintBytes: p.footprintBytes } : {}),
      ...(p.error != null ? { error: p.error } : {})
    })
    if (p.split != null && (r.split == null || p.reason !== 'split')) {
      r.split = { coordinator: name(p.split.coordinator), hosts: p.split.hosts.map((h) => ({ host: name(h.peerId), layers: h.layers, bytes: h.bytes })) }
    }
  }
  for (const pin of view.pins ?? []) row(pin.model).pins.push(pin.host != null ? name(pin.host) : '*')
  for (const r of rows.values()) {
    r.placements.sort((a, b) => a.host.localeCompare(b.host))
    const states = [ready.has(r.name) ? 'ready' : 'available', ...r.placements.map((p) => p.state)]
    r.state = states.sort((a, b) => rank(a) - rank(b))[0]!
  }
  return [...rows.values()].sort((a, b) => a.name.localeCompare(b.name))
}

function rank (state: string): number {
  const i = STATE_RANK.indexOf(state)
  return i < 0 ? STATE_RANK.length : i
}

/** One placement as a word: `host:state` with its load share, or `host:blocks=N` for a split member. */
function placementWord (p: ModelPlacement, split: ModelRow['split']): string {
  if (p.reason === 'split') return `${p.host}:blocks=${split?.hosts.find((h) => h.host === p.host)?.layers ?? 0}`
  const progress = p.state === 'loading' && p.progress != null ? `(${Math.round(p.progress * 100)}%)` : ''
  const blocks = split != null && split.coordinator === p.host ? `,blocks=${split.hosts.find((h) => h.host === p.host)?.layers ?? 0}` : ''
  return `${p.host}:${p.state}${progress}${blocks}`
}

export function formatModels (rows: ModelRow[], style: Style = PLAIN): string {
  if (rows.length === 0) return 'no models in the mesh'
  const t: Cell[][] = [['NAME', 'STATE', 'SIZE', 'QUANT', 'CONTEXT', 'ON DISK', 'PLACED', 'PINNED']]
  for (const m of rows) {
    t.push([
      m.name,
      stateCell(m.state),
      m.sizeBytes == null ? NONE : bytes(m.sizeBytes),
      m.quantization ?? NONE,
      m.contextLength == null ? NONE : count(m.contextLength),
      m.onDisk.map((d) => d.source === 'file' ? d.host : `${d.host}(${d.source})`).join(',') || NONE,
      m.placements.map((p) => placementWord(p, m.split)).join(',') || NONE,
      m.pins.join(',') || NONE
    ])
  }
  let out = table(t, style)
  const failed = rows.flatMap((m) => m.placements.filter((p) => p.error != null).map((p) => `${m.name}@${p.host}: ${p.error!.split('\n')[0]!}`))
  if (failed.length > 0) out += `\n\nfailures:\n${failed.map((f) => `  ${terminalSafe(f)}`).join('\n')}`
  return out
}

// ---------------------------------------------------------------- ps

export interface ProcessRow {
  host: string
  runner: string
  model: string
  kind: string
  state: string
  /** parallel slots of the runner */
  slots: number
  /** slots serving a request now, for the model on that host (its last heartbeat); null: not reported */
  slotsBusy: number | null
  /** requests waiting for the model on that host; null: not reported */
  queue: number | null
  /** the host's generated tokens per second (EWMA over its recent requests); null: no heartbeat */
  tokensPerSec: number | null
  /** memory the model takes on that host as placed (weights + KV cache + overhead), bytes; null: not known */
  memoryBytes: number | null
  restarts: number
}

/** `llmesh ps`: the runners of the whole mesh with their load. */
export async function ps (target: ApiTarget): Promise<ProcessRow[]> {
  return psOf(await fetchView(target))
}

export function psOf (view: MeshView): ProcessRow[] {
  const rows: ProcessRow[] = []
  for (const n of [...view.nodes].sort(byHost)) {
    for (const r of n.runners) {
      const load = modelLoad(n, r.model)
      const placement = (view.placements ?? []).find((p) => p.peerId === n.peerId && p.model === r.model)
      rows.push({
        host: n.name,
        runner: r.id,
        model: r.model,
        kind: r.kind,
        state: r.state,
        slots: r.slots,
        slotsBusy: load?.busy ?? null,
        queue: load?.queue ?? null,
        tokensPerSec: n.metrics?.tokensPerSec ?? null,
        memoryBytes: placement?.footprintBytes ?? null,
        restarts: r.restarts ?? 0
      })
    }
  }
  return rows
}

/**
 * A model's slots in use and queue on a host, from its last heartbeat: the per-model figures
 * when it lists the model (a host lists the models it has served); else 0 and 0 when the whole
 * host is idle, the host's figures when the model is its only runner's, null when not known.
 */
function modelLoad (n: ViewNode, model: string): { busy: number, queue: number } | undefined {
  const m = n.metrics
  if (m == null) return undefined
  const listed = m.models?.find((x) => x.model === model)
  if (listed != null) return listed
  if (m.slotsBusy === 0 && m.queueDepth === 0) return { busy: 0, queue: 0 }
  if (n.runners.length === 1) return { busy: m.slotsBusy, queue: m.queueDepth }
  return undefined
}

export function formatPs (rows: ProcessRow[], style: Style = PLAIN): string {
  if (rows.length === 0) return 'no runners in the mesh'
  const t: Cell[][] = [['HOST', 'MODEL', 'KIND', 'STATE', 'SLOTS', 'QUEUE', 'TOK/S', 'MEMORY', 'RESTARTS', 'RUNNER']]
  for (const r of rows) {
    t.push([
      r.host,
      r.model,
      r.kind,
      stateCell(r.state),
      r.slotsBusy == null ? `-/${r.slots}` : `${r.slotsBusy}/${r.slots}`,
      r.queue == null ? NONE : String(r.queue),
      r.tokensPerSec == null ? NONE : r.tokensPerSec.toFixed(1),
      r.memoryBytes == null ? NONE : bytes(r.memoryBytes),
      r.restarts > 0 ? { text: String(r.restarts), tone: 'warn' } : '0',
      r.runner
    ])
  }
  return table(t, style)
}

// ---------------------------------------------------------------- placements

export interface PlacementRow extends ModelPlacement {
  model: string
  /** when this state began, ms since the epoch (the host's clock) */
  since: number
  /** a split: the coordinator and the blocks each host holds */
  split?: { coordinator: string, hosts: Array<{ host: string, layers: number }> }
}

/** `llmesh placements`: where every host runs or loads models, and why. */
export async function placements (target: ApiTarget): Promise<PlacementRow[]> {
  return placementsOf(await fetchView(target))
}

export function placementsOf (view: MeshView): PlacementRow[] {
  const name = namer(view)
  return (view.placements ?? []).map((p) => ({
    model: p.model,
    host: name(p.peerId),
    state: p.state,
    reason: p.reason,
    ...(p.progress != null ? { progress: p.progress } : {}),
    ...(p.footprintBytes != null ? { footprintBytes: p.footprintBytes } : {}),
    ...(p.error != null ? { error: p.error } : {}),
    since: p.since,
    ...(p.split != null ? { split: { coordinator: name(p.split.coordinator), hosts: p.split.hosts.map((h) => ({ host: name(h.peerId), layers: h.layers })) } } : {})
  })).sort((a, b) => a.model.localeCompare(b.model) || a.host.localeCompare(b.host))
}

export function formatPlacements (rows: PlacementRow[], style: Style = PLAIN, now = Date.now()): string {
  if (rows.length === 0) return 'no placements'
  const t: Cell[][] = [['MODEL', 'HOST', 'STATE', 'WHY', 'MEMORY', 'SINCE', 'DETAIL']]
  for (const p of rows) {
    const blocks = p.split == null ? undefined : p.reason === 'split' ? `blocks for ${p.split.coordinator}: ${p.split.hosts.find((h) => h.host === p.host)?.layers ?? 0}` : `split ${p.split.hosts.map((h) => `${h.host}=${h.layers}`).join(' ')}`
    const detail = p.state === 'loading' && p.progress != null ? `${Math.round(p.progress * 100)}%` : p.error != null ? p.error.split('\n')[0]! : blocks
    t.push([
      p.model,
      p.host,
      stateCell(p.state),
      p.reason,
      p.footprintBytes == null ? NONE : bytes(p.footprintBytes),
      style.tty ? age(Math.max(0, now - p.since), style) : new Date(p.since).toISOString(),
      detail ?? NONE
    ])
  }
  return table(t, style)
}

// ---------------------------------------------------------------- pins

export interface PinsData {
  /** the pins in effect after the change: model and host name ('*': anywhere) */
  pins: Array<{ model: string, host: string }>
}

/**
 * `llmesh pin` / `llmesh unpin`: sets or clears a pin through the asked agent (it gossips it to
 * the mesh); answers the pins in effect. `host` is a node name or peer id; absent: anywhere.
 */
export async function setPin (target: ApiTarget, model: string, host: string | undefined, pinned: boolean): Promise<PinsData> {
  const answer = await apiCall(target, pinned ? 'POST' : 'DELETE', '/admin/pins', { model, ...(host != null ? { host } : {}) }) as { pins: EffectivePin[] }
  const name = namer(await fetchView(target))
  return { pins: answer.pins.map((p) => ({ model: p.model, host: p.host != null ? name(p.host) : '*' })) }
}

export function formatPins (data: PinsData, style: Style = PLAIN): string {
  if (data.pins.length === 0) return 'no pins'
  return table([['MODEL', 'HOST'], ...data.pins.map((p) => [p.model, p.host])], style)
}
