import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { AGENT_INFO_FILE, AgentConfigSchema, parseConfig, type AgentConfig, type AgentConfigInput, type AgentInfo } from '@llmesh/agent'
import type { MeshView } from '@llmesh/agent'
import type { AdmissionSnapshot } from '@llmesh/protocol'
import { decodeJoinToken, storeJoinedKey } from './join-token.js'
import { terminalSafe } from './terminal.js'
import { MULTIADDR_EXAMPLE, multiaddrProblem } from './multiaddr-check.js'
import { UsageError } from './usage-error.js'
import { fetchView } from './api-client.js'
import { age, stateCell, table, PLAIN, NONE, type Cell, type Style } from './render.js'

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

/** The config key each `llmesh up` flag sets, so a bad value is reported under the flag's name. */
const FLAG_KEYS: ReadonlyArray<readonly [flag: keyof UpFlags, key: string]> = [
  ['name', 'name'], ['cluster', 'clusterId'], ['data-dir', 'dataDir'], ['api-host', 'api.host'], ['api-port', 'api.port'],
  ['listen', 'p2p.listen'], ['bootstrap', 'p2p.bootstrap'], ['model', 'models'], ['model-dir', 'modelDirs'], ['ollama', 'ollama'],
  ['llama-server', 'llamaServer.binary'], ['slots', 'llamaServer.slots'], ['threads', 'llamaServer.threads'],
  ['strategy', 'strategy'], ['log-level', 'logLevel'], ['cluster-key', 'clusterKeyFile']
]

function int (flag: string, value: string): number {
  const n = Number(value)
  if (value.trim() === '' || !Number.isInteger(n)) throw new UsageError(`--${flag} '${value}': expected an integer`)
  return n
}

/** A JSON config file's content; a file that cannot be read or is not a JSON object is a UsageError. */
async function readConfigFile (file: string): Promise<Record<string, unknown>> {
  let text
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    throw new UsageError(`--config ${file}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { cause: err })
  }
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    throw new UsageError(`--config ${file}: not JSON (${(err as Error).message})`, { cause: err })
  }
  if (value == null || typeof value !== 'object' || Array.isArray(value)) throw new UsageError(`--config ${file}: expected a JSON object of options (see docs/CONFIG.md)`)
  return value as Record<string, unknown>
}

/**
 * Validates a config input, naming for each problem the flag that set the value (`--bootstrap
 * 'garbage': ...`) or else the config key (`p2p.bootstrap.1: ...`): the agent's schema and
 * every listen and bootstrap address through the parsers the agent uses. One UsageError listing
 * every problem, one per line; a valid input comes back parsed and frozen.
 */
function validate (input: Record<string, unknown>, fileInput: Record<string, unknown>, flags: UpFlags, file: string | undefined): Readonly<AgentConfig> {
  const flagOf = (path: ReadonlyArray<PropertyKey>): keyof UpFlags | undefined => {
    const key = path.map(String).join('.')
    const hit = FLAG_KEYS.find(([flag, k]) => flags[flag] != null && (key === k || key.startsWith(`${k}.`)))
    if (hit == null) return undefined
    // flags that add to a list (--bootstrap, --model, --model-dir) come after the file's entries
    const keyPath = hit[1].split('.')
    const fromFile = valueAt(fileInput, keyPath)
    const index = path[keyPath.length]
    if (hit[0] !== 'listen' && Array.isArray(fromFile) && typeof index === 'number' && index < fromFile.length) return undefined
    return hit[0]
  }
  const problems: Array<{ text: string, flag: boolean }> = []
  const report = (path: ReadonlyArray<PropertyKey>, value: unknown, message: string): void => {
    const flag = flagOf(path)
    const shown = typeof value === 'string' || typeof value === 'number' ? ` '${String(value)}'` : ''
    problems.push(flag != null
      ? { text: `--${flag}${shown}: ${message}`, flag: true }
      : { text: `${path.length > 0 ? path.join('.') : '(config)'}${shown}: ${message}`, flag: false })
  }
  const parsed = AgentConfigSchema.safeParse(input)
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      if (issue.code === 'unrecognized_keys') {
        for (const key of issue.keys) report([...issue.path, key], undefined, 'unknown key (every key: docs/CONFIG.md)')
      } else {
        report(issue.path, valueAt(input, issue.path), issue.code === 'invalid_union' ? unionMessage(issue.errors, issue.message) : issue.message)
      }
    }
  }
  // addresses as given (defaults are valid), checked even when another option is bad: one report
  for (const key of ['listen', 'bootstrap'] as const) {
    const addrs = valueAt(input, ['p2p', key])
    if (!Array.isArray(addrs)) continue
    for (const [i, addr] of addrs.entries()) {
      const problem = typeof addr === 'string' ? multiaddrProblem(addr) : undefined
      if (problem != null) report(['p2p', key, i], addr, `${problem}; expected a multiaddr such as ${MULTIADDR_EXAMPLE}`)
    }
  }
  if (problems.length === 1) {
    const [p] = problems as [{ text: string, flag: boolean }]
    throw new UsageError(p.flag || file == null ? p.text : `${file}: ${p.text}`)
  }
  if (problems.length > 1) throw new UsageError(`invalid config${file != null ? ` (${file})` : ''}:\n${problems.map((p) => `  ${p.text}`).join('\n')}`)
  return parseConfig(input)
}

/** 'expected false or object' for a value none of a union's members take, else zod's message. */
function unionMessage (branches: ReadonlyArray<ReadonlyArray<{ message: string }>>, fallback: string): string {
  const expected = branches.map((b) => b.length === 1 ? /^Invalid input: expected (\w+)(?:, received \w+)?$/.exec(b[0]!.message)?.[1] : undefined)
  return expected.every((e) => e != null) ? `expected ${expected.join(' or ')}` : fallback
}

function valueAt (input: unknown, path: ReadonlyArray<PropertyKey>): unknown {
  let v = input
  for (const k of path) v = v != null && typeof v === 'object' ? (v as Record<PropertyKey, unknown>)[k] : undefined
  return v
}

/**
 * Builds the agent config from an optional JSON file overlaid with command-line flags, and
 * validates it once (see `validate`): what `llmesh up` starts with and what `llmesh config
 * check` reports. With `--join`, stores the token's key in the data dir unless `dryRun`.
 */
export async function resolveUpConfig (flags: UpFlags, options: { dryRun?: boolean } = {}): Promise<Readonly<AgentConfig>> {
  const input = flags.config != null ? await readConfigFile(flags.config) : {}
  const cfg = { ...input } as AgentConfigInput & Record<string, unknown>
  const object = (v: unknown): Record<string, unknown> => v != null && typeof v === 'object' && !Array.isArray(v) ? v as Record<string, unknown> : {}
  const api = { ...object(cfg.api) }
  const p2p = { ...object(cfg.p2p) } as NonNullable<AgentConfigInput['p2p']>
  const llamaServer = { ...object(cfg.llamaServer) }
  const list = (v: unknown): string[] => Array.isArray(v) ? v as string[] : []
  if (flags.name != null) cfg.name = flags.name
  if (flags.cluster != null) cfg.clusterId = flags.cluster
  if (flags['data-dir'] != null) cfg.dataDir = flags['data-dir']
  if (flags['api-host'] != null) api['host'] = flags['api-host']
  if (flags['api-port'] != null) api['port'] = int('api-port', flags['api-port'])
  if (flags.listen != null && flags.listen.length > 0) p2p.listen = flags.listen
  if (flags.bootstrap != null && flags.bootstrap.length > 0) p2p.bootstrap = [...list(p2p.bootstrap), ...flags.bootstrap]
  if (flags['no-mdns'] === true) p2p.mdns = false
  if (flags.model != null) {
    // --model path.gguf or --model name=path.gguf
    cfg.models = [...list(cfg.models) as never[], ...flags.model.map((m) => {
      const eq = m.indexOf('=')
      return eq > 0 ? { name: m.slice(0, eq), path: m.slice(eq + 1) } : { path: m }
    })]
  }
  if (flags['model-dir'] != null) cfg.modelDirs = [...list(cfg.modelDirs), ...flags['model-dir']]
  if (flags.ollama != null) cfg.ollama = { url: flags.ollama }
  if (flags['llama-server'] != null) llamaServer['binary'] = flags['llama-server']
  if (flags.slots != null) llamaServer['slots'] = int('slots', flags.slots)
  if (flags.threads != null) llamaServer['threads'] = int('threads', flags.threads)
  if (flags.strategy != null) cfg.strategy = flags.strategy as AgentConfig['strategy']
  if (flags['log-level'] != null) cfg.logLevel = flags['log-level'] as AgentConfig['logLevel']
  if (flags['cluster-key'] != null) cfg.clusterKeyFile = flags['cluster-key']
  if (flags['open-mesh'] === true) cfg.openMesh = true
  let token
  if (flags.join != null) {
    // the token's key goes to the data dir (where a later plain 'llmesh up' finds it) and its
    // addresses are bootstrap addresses: the new host reaches the cluster with or without mDNS
    try {
      token = decodeJoinToken(flags.join)
    } catch (err) {
      throw new UsageError((err as Error).message, { cause: err })
    }
    if (flags.cluster == null && input['clusterId'] == null) cfg.clusterId = token.clusterId
    p2p.bootstrap = [...list(p2p.bootstrap), ...token.addrs]
  }
  const config = validate({ ...cfg, api, p2p, llamaServer }, input, flags, flags.config)
  if (token != null) {
    if (config.clusterKeyFile != null) throw new UsageError('--join and --cluster-key both name a key: give one')
    if (options.dryRun !== true) await storeJoinedKey(config.dataDir, token.key)
  }
  return config
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
  const view = await fetchView({ api, ...(apiKey != null ? { apiKey } : {}) })
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
 * The mesh as a table: plain, stable columns off a terminal (readable by `cut`/`awk`), colour
 * and relative times on one. Every cell comes from peers' records and is printed through
 * `terminalSafe`: a peer's name cannot carry terminal escapes to the screen.
 */
export function formatStatus (data: StatusData, style: Style = PLAIN): string {
  const rows: Cell[][] = [['NAME', 'PEER', 'STATE', 'LINK', 'HEARD', 'SLOTS', 'QUEUE', 'API', 'MODELS', 'RUNNERS']]
  for (const n of data.nodes) {
    rows.push([
      n.self ? `${n.name} (this)` : n.name,
      `…${n.peerId.slice(-10)}`,
      stateCell(n.state),
      stateCell(n.self ? 'self' : n.connected ? 'connected' : 'unreachable'),
      n.self ? NONE : n.heartbeatAgeMs == null ? { text: 'never', tone: 'bad' } : age(n.heartbeatAgeMs, style),
      n.load == null ? NONE : `${n.load.slotsBusy}/${n.load.slotsTotal}`,
      n.load == null ? NONE : String(n.load.queueDepth),
      n.api,
      n.models.join(',') || NONE,
      n.runners.map((r) => `${r.model}:${r.state}`).join(',') || NONE
    ])
  }
  const trust = data.trust == null ? '' : ` (${terminalSafe(`${data.trust.mode}${data.trust.keyId != null ? `, key ${data.trust.keyId}` : ''}`)})`
  let out = `mesh seen from ${terminalSafe(data.via)}${trust}: ${data.nodes.length} node(s)\n${table(rows, style)}`
  if (data.placements.length > 0) {
    const prow: Cell[][] = [['MODEL', 'HOST', 'STATE', 'WHY', 'DETAIL']]
    for (const p of data.placements) {
      const blocks = p.split == null ? undefined : p.reason === 'split' ? `blocks for ${p.split.coordinator}: ${p.split.hosts.find((h) => h.host === p.host)?.layers ?? 0}` : `split ${p.split.hosts.map((h) => `${h.host}=${h.layers}`).join(' ')}`
      const detail = p.state === 'loading' && p.progress != null ? `${Math.round(p.progress * 100)}%` : p.error != null ? p.error.split('\n')[0]! : blocks ?? '-'
      prow.push([p.model, p.host, stateCell(p.state), p.reason, detail])
    }
    out += `\n\nplacements:\n${table(prow, style)}`
  }
  if (data.pins.length > 0) out += `\n\npins: ${data.pins.map((p) => terminalSafe(`${p.model}@${p.host}`)).join(', ')}`
  return out
}
