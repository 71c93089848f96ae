import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { request } from 'undici'
import { AGENT_INFO_FILE, parseConfig, type AgentConfig, type AgentConfigInput, type AgentInfo } from '@llmesh/agent'
import type { MeshView } from '@llmesh/agent'
import type { AdmissionSnapshot } from '@llmesh/protocol'
import { decodeJoinToken, storeJoinedKey } from './join-token.js'
import { terminalSafe } from './terminal.js'

export interface UpFlags {
  config?: string
  name?: string
  cluster?: string
  'data-dir'?: string
  'api-host'?: string
  'api-port'?: string
  listen?: string[]
  bootstrap?: string[]
  'no-mdns'?: boolean
  model?: string[]
  'model-dir'?: string[]
  ollama?: string
  'llama-server'?: string
  slots?: string
  threads?: string
  strategy?: string
  'log-level'?: string
  'cluster-key'?: string
  'open-mesh'?: boolean
  join?: string
}

function int (flag: string, value: string): number {
  const n = Number(value)
  if (!Number.isInteger(n)) throw new Error(`--${flag} must be an integer, got '${value}'`)
  return n
}

/** Builds the agent config from an optional JSON file overlaid with command-line flags. */
export async function resolveUpConfig (flags: UpFlags): Promise<Readonly<AgentConfig>> {
  let input: Record<string, unknown> = {}
  if (flags.config != null) {
    try {
      input = JSON.parse(await readFile(flags.config, 'utf8')) as Record<string, unknown>
    } catch (err) {
      throw new Error(`cannot read config ${flags.config}: ${(err as Error).message}`, { cause: err })
    }
  }
  const cfg = input as AgentConfigInput & Record<string, unknown>
  const api = { ...(cfg.api ?? {}) }
  const p2p = { ...(cfg.p2p ?? {}) }
  const llamaServer = { ...(cfg.llamaServer ?? {}) }
  if (flags.name != null) cfg.name = flags.name
  if (flags.cluster != null) cfg.clusterId = flags.cluster
  if (flags['data-dir'] != null) cfg.dataDir = flags['data-dir']
  if (flags['api-host'] != null) api.host = flags['api-host']
  if (flags['api-port'] != null) api.port = int('api-port', flags['api-port'])
  if (flags.listen != null && flags.listen.length > 0) p2p.listen = flags.listen
  if (flags.bootstrap != null && flags.bootstrap.length > 0) p2p.bootstrap = [...(p2p.bootstrap ?? []), ...flags.bootstrap]
  if (flags['no-mdns'] === true) p2p.mdns = false
  if (flags.model != null) {
    // --model path.gguf or --model name=path.gguf
    cfg.models = [...(cfg.models ?? []), ...flags.model.map((m) => {
      const eq = m.indexOf('=')
      return eq > 0 ? { name: m.slice(0, eq), path: m.slice(eq + 1) } : { path: m }
    })]
  }
  if (flags['model-dir'] != null) cfg.modelDirs = [...(cfg.modelDirs ?? []), ...flags['model-dir']]
  if (flags.ollama != null) cfg.ollama = { url: flags.ollama }
  if (flags['llama-server'] != null) llamaServer.binary = flags['llama-server']
  if (flags.slots != null) llamaServer.slots = int('slots', flags.slots)
  if (flags.threads != null) llamaServer.threads = int('threads', flags.threads)
  if (flags.strategy != null) cfg.strategy = flags.strategy as AgentConfig['strategy']
  if (flags['log-level'] != null) cfg.logLevel = flags['log-level'] as AgentConfig['logLevel']
  if (flags['cluster-key'] != null) cfg.clusterKeyFile = flags['cluster-key']
  if (flags['open-mesh'] === true) cfg.openMesh = true
  if (flags.join != null) {
    // the token's key goes to the data dir (where a later plain 'llmesh up' finds it) and its
    // addresses are bootstrap addresses: the new host reaches the cluster with or without mDNS
    const token = decodeJoinToken(flags.join)
    if (flags.cluster == null && input.clusterId == null) cfg.clusterId = token.clusterId
    p2p.bootstrap = [...(p2p.bootstrap ?? []), ...token.addrs]
    const config = parseConfig({ ...cfg, api, p2p, llamaServer })
    if (config.clusterKeyFile != null) throw new Error('--join and --cluster-key both name a key: give one')
    await storeJoinedKey(config.dataDir, token.key)
    return config
  }
  return parseConfig({ ...cfg, api, p2p, llamaServer })
}

export interface StatusRow {
  name: string
  peerId: string
  self: boolean
  connected: boolean
  state: string
  heartbeatAgeMs: number | null
  /** busy / total slots and queued requests, from the host's last heartbeat */
  load: AdmissionSnapshot | null
  api: string
  models: string[]
  runners: Array<{ id: string, model: string, state: string, slots: number }>
}

export interface StatusData {
  via: string
  self: string
  /** how the asked agent's connections are protected (home, lab, open) and its key's fingerprint */
  trust: MeshView['trust']
  nodes: StatusRow[]
  /** where models run or load, by host name: state, why, load progress (0..1), failure */
  placements: Array<{ model: string, host: string, state: string, reason: string, progress?: number, error?: string, split?: StatusSplit }>
  /** pins in effect, by host name ('*': anywhere) */
  pins: Array<{ model: string, host: string }>
}

/** A model split across hosts: its coordinator and the blocks each host holds, by host name. */
export interface StatusSplit {
  coordinator: string
  hosts: Array<{ host: string, layers: number }>
}

/** Finds the agent to ask: --api wins, else the agent.json of the data dir. */
export async function resolveApi (api: string | undefined, dataDir: string | undefined): Promise<string> {
  if (api != null) return api.replace(/\/+$/, '')
  const dir = dataDir ?? parseConfig({}).dataDir
  try {
    const info = JSON.parse(await readFile(join(dir, AGENT_INFO_FILE), 'utf8')) as AgentInfo
    return info.api
  } catch {
    throw new Error(`no running agent found in ${dir} (start one with 'llmesh up', or pass --api http://host:port)`)
  }
}

/** `llmesh status`: the mesh as one agent sees it. */
export async function status (api: string, apiKey?: string): Promise<StatusData> {
  let res
  try {
    res = await request(`${api}/mesh/view`, { headersTimeout: 5000, bodyTimeout: 5000, ...(apiKey != null && apiKey !== '' ? { headers: { authorization: `Bearer ${apiKey}` } } : {}) })
  } catch (err) {
    throw new Error(`cannot reach the agent at ${api}: ${(err as Error).message}`, { cause: err })
  }
  if (res.statusCode === 401) {
    await res.body.dump()
    throw new Error(`agent at ${api} needs an API key: set LLMESH_API_KEY to one (llmesh apikey add makes one)`)
  }
  if (res.statusCode !== 200) throw new Error(`agent at ${api} answered ${res.statusCode}`)
  const view = await res.body.json() as MeshView
  const nameOf = (peerId: string): string => view.nodes.find((n) => n.peerId === peerId)?.name ?? `…${peerId.slice(-10)}`
  return {
    placements: (view.placements ?? []).map((p) => ({
      model: p.model,
      host: nameOf(p.peerId),
      state: p.state,
      reason: p.reason,
      ...(p.progress != null ? { progress: p.progress } : {}),
      ...(p.error != null ? { error: p.error } : {}),
      ...(p.split != null ? { split: { coordinator: nameOf(p.split.coordinator), hosts: p.split.hosts.map((h) => ({ host: nameOf(h.peerId), layers: h.layers })) } } : {})
    })).sort((a, b) => a.model.localeCompare(b.model) || a.host.localeCompare(b.host)),
    pins: (view.pins ?? []).map((p) => ({ model: p.model, host: p.host != null ? nameOf(p.host) : '*' })),
    via: api,
    self: view.self,
    trust: view.trust,
    nodes: view.nodes
      .map((n) => ({
        name: n.name,
        peerId: n.peerId,
        self: n.self,
        connected: n.connected,
        state: n.state,
        heartbeatAgeMs: n.heartbeatAgeMs,
        load: n.metrics != null ? { slotsBusy: n.metrics.slotsBusy, slotsTotal: n.metrics.slotsTotal, queueDepth: n.metrics.queueDepth } : null,
        api: n.api,
        models: n.models.map((m) => m.name),
        runners: n.runners.map((r) => ({ id: r.id, model: r.model, state: r.state, slots: r.slots }))
      }))
      .sort((a, b) => Number(b.self) - Number(a.self) || a.name.localeCompare(b.name))
  }
}

/**
 * Plain, stable columns: readable on a terminal and by `cut`/`awk`. Every cell comes from
 * peers' records and is printed through `terminalSafe`: a peer's name cannot carry terminal
 * escapes to the screen.
 */
export function formatStatus (data: StatusData): string {
  const rows = [['NAME', 'PEER', 'STATE', 'LINK', 'HEARD', 'SLOTS', 'QUEUE', 'API', 'MODELS', 'RUNNERS']]
  for (const n of data.nodes) {
    rows.push([
      n.self ? `${n.name} (this)` : n.name,
      `…${n.peerId.slice(-10)}`,
      n.state,
      n.self ? 'self' : n.connected ? 'connected' : 'unreachable',
      n.self ? '-' : n.heartbeatAgeMs == null ? 'never' : `${(n.heartbeatAgeMs / 1000).toFixed(1)}s ago`,
      n.load == null ? '-' : `${n.load.slotsBusy}/${n.load.slotsTotal}`,
      n.load == null ? '-' : String(n.load.queueDepth),
      n.api,
      n.models.join(',') || '-',
      n.runners.map((r) => `${r.model}:${r.state}`).join(',') || '-'
    ])
  }
  const lines = table(rows).split('\n')
  const trust = data.trust == null ? '' : ` (${terminalSafe(`${data.trust.mode}${data.trust.keyId != null ? `, key ${data.trust.keyId}` : ''}`)})`
  let out = `mesh seen from ${terminalSafe(data.via)}${trust}: ${data.nodes.length} node(s)\n${lines.join('\n')}`
  if (data.placements.length > 0) {
    const prow = [['MODEL', 'HOST', 'STATE', 'WHY', 'DETAIL']]
    for (const p of data.placements) {
      const blocks = p.split == null ? undefined : p.reason === 'split' ? `blocks for ${p.split.coordinator}: ${p.split.hosts.find((h) => h.host === p.host)?.layers ?? 0}` : `split ${p.split.hosts.map((h) => `${h.host}=${h.layers}`).join(' ')}`
      const detail = p.state === 'loading' && p.progress != null ? `${Math.round(p.progress * 100)}%` : p.error != null ? p.error.split('\n')[0]! : blocks ?? '-'
      prow.push([p.model, p.host, p.state, p.reason, detail])
    }
    out += `\n\nplacements:\n${table(prow)}`
  }
  if (data.pins.length > 0) out += `\n\npins: ${data.pins.map((p) => terminalSafe(`${p.model}@${p.host}`)).join(', ')}`
  return out
}

/** Rows as plain columns, two blanks apart, every cell through terminalSafe. */
function table (rows: string[][]): string {
  const safe = rows.map((r) => r.map(terminalSafe))
  const widths = safe[0]!.map((_, i) => Math.max(...safe.map((r) => (r[i] ?? '').length)))
  return safe.map((r) => r.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join('  ').trimEnd()).join('\n')
}
