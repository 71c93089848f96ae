import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import { INFER_PROTOCOL, LlmeshError, PROTOCOL_VERSION, type NodeRecord, type PeerMetrics } from '@llmesh/protocol'
import { ClusterDoc } from '@llmesh/state'
import { Mesh, loadOrCreateKey, peerIdOfKey, requestInfer, serveInfer } from '@llmesh/mesh'
import { route, type RouteTarget } from '@llmesh/scheduler'
import { RunnerManager, type Runner, type RunnerDescription, type RunnerPath, type RunnerResponse } from '@llmesh/runners'
import { findLlamaServer } from './binaries.js'
import type { AgentConfig } from './config.js'
import { buildHttpServer } from './http.js'
import { withFinally } from './iter.js'
import { AGENT_VERSION, SNAPSHOT_INTERVAL_MS } from './constants.js'

/** What `agent.json` in the data dir says about a running agent; the CLI reads it. */
export interface AgentInfo {
  peerId: string
  name: string
  api: string
  addrs: string[]
  pid: number
  startedAt: number
}

export interface ViewNode extends NodeRecord {
  self: boolean
  connected: boolean
  /** membership state as this agent sees it; 'unknown' before the first heartbeat */
  state: 'alive' | 'suspect' | 'dead' | 'left' | 'unknown'
  /** ms since the last heartbeat; null when none was heard */
  heartbeatAgeMs: number | null
  metrics: PeerMetrics | null
}

export interface MeshView { self: string, nodes: ViewNode[] }

/** A request routed to a target and its response, ready to stream to the client. */
export interface RoutedResponse extends RunnerResponse {
  target: RouteTarget
}

/**
 * One llmesh agent: mesh node, cluster document, local runners and the HTTP API, wired
 * together. Policy lives in the scheduler; this class only carries it out.
 */
export class Agent {
  readonly config: Readonly<AgentConfig>
  readonly log: Logger
  private mesh?: Mesh
  private doc?: ClusterDoc
  private http?: FastifyInstance
  private manager?: RunnerManager
  private readonly inflight = new Map<string, number>()
  /** requests this host's runners are serving now (local and forwarded) */
  private serving = 0
  private readonly startedAt = Date.now()
  private snapshotTimer?: NodeJS.Timeout
  private apiAddress = ''
  private _peerId = ''

  constructor (config: Readonly<AgentConfig>, logger: Logger) {
    this.config = config
    this.log = logger
  }

  get peerId (): string { return this._peerId }
  get apiUrl (): string { return `http://${this.apiAddress}` }

  async start (): Promise<AgentInfo> {
    const { config } = this
    await mkdir(config.dataDir, { recursive: true })
    const privateKey = await loadOrCreateKey(join(config.dataDir, 'peer.key'))
    this._peerId = peerIdOfKey(privateKey)
    const snapshot = await readFile(join(config.dataDir, 'cluster.snapshot')).catch(() => undefined)
    this.doc = new ClusterDoc(this._peerId, snapshot != null ? new Uint8Array(snapshot) : undefined)

    // llama-server when one is configured or on PATH, else the embedded llama.cpp (zero setup)
    const llamaServer = await findLlamaServer(config.llamaServer.binary)
    if (llamaServer == null && (config.models.length > 0 || config.modelDirs.length > 0)) {
      this.log.info('no llama-server binary found: models run on the embedded llama.cpp (node-llama-cpp)')
    }
    this.manager = new RunnerManager({
      logger: this.log,
      idPrefix: this._peerId.slice(-8),
      models: config.models.map((m) => ({ path: m.path, ...(m.name != null ? { name: m.name } : {}) })),
      modelDirs: config.modelDirs,
      ...(config.ollama !== false ? { ollama: { url: config.ollama.url } } : {}),
      ...(llamaServer != null ? { llamaServer: { binary: llamaServer } } : {}),
      slots: config.llamaServer.slots,
      ctxSize: config.llamaServer.ctxSize,
      ...(config.llamaServer.gpuLayers != null ? { gpuLayers: config.llamaServer.gpuLayers } : {}),
      stallTimeoutMs: config.stallTimeoutMs
    })
    // the catalog is read before anything is published: a bad model path is a start error
    await this.manager.start()
    this.manager.onChange(() => { this.publishSelf() })

    this.mesh = new Mesh({
      clusterId: config.clusterId,
      privateKey,
      listen: config.p2p.listen,
      bootstrap: config.p2p.bootstrap,
      doc: this.doc,
      logger: this.log,
      mdns: { enabled: config.p2p.mdns, intervalMs: config.p2p.mdnsIntervalMs },
      heartbeatIntervalMs: config.p2p.heartbeatIntervalMs,
      timings: config.membership,
      incarnation: this.startedAt,
      metrics: () => this.localMetrics(),
      refreshSelf: () => { this.doc?.setSelf(this.selfRecord(), true) }
    })
    await this.mesh.start()
    await this.mesh.handle(INFER_PROTOCOL, async (stream, remotePeer) => {
      await serveInfer(stream, async (request, reply) => {
        this.log.debug({ reqId: request.id, peer: remotePeer, model: request.model }, 'serving forwarded request')
        const runner = this.localRunnerFor(request.model, request.runnerId)
        const res = await this.serveLocal(runner, request.path, request.body, reply.signal)
        await reply.head({ status: res.status, contentType: res.contentType, runnerId: runner.id })
        for await (const chunk of res.body) await reply.data(chunk)
      })
    })

    this.http = buildHttpServer(this)
    this.apiAddress = await listen(this.http, config.api.host, config.api.port)
    this.publishSelf()

    this.snapshotTimer = setInterval(() => { void this.saveSnapshot() }, SNAPSHOT_INTERVAL_MS)
    this.snapshotTimer.unref()

    const info: AgentInfo = {
      peerId: this._peerId,
      name: config.name,
      api: this.apiUrl,
      addrs: this.mesh.addrs(),
      pid: process.pid,
      startedAt: this.startedAt
    }
    await writeAtomic(join(config.dataDir, 'agent.json'), JSON.stringify(info, null, 2))
    this.log.info(info, 'agent ready')
    return info
  }

  /** This agent's record, as published into the cluster document. */
  selfRecord (): NodeRecord {
    return {
      peerId: this._peerId,
      name: this.config.name,
      version: AGENT_VERSION,
      protocol: PROTOCOL_VERSION,
      addrs: this.mesh?.addrs() ?? [],
      api: this.apiAddress,
      hardware: this.manager?.hardware() ?? { cpus: 0, memBytes: 0, platform: process.platform, arch: process.arch },
      models: this.manager?.models() ?? [],
      // busy/ready flips with every request: the record says "serving", the heartbeats say how busy
      runners: (this.manager?.runners() ?? []).map((r) => {
        const info = r.info()
        return info.state === 'busy' ? { ...info, state: 'ready' as const } : info
      }),
      startedAt: this.startedAt,
      updatedAt: Date.now()
    }
  }

  /** The numbers this agent gossips in each heartbeat. */
  private localMetrics (): PeerMetrics {
    let slotsTotal = 0
    for (const r of this.manager?.runners() ?? []) if (r.state === 'ready' || r.state === 'busy') slotsTotal += r.info().slots
    return {
      slotsBusy: this.serving,
      slotsTotal,
      queueDepth: 0,
      tokensPerSec: 0,
      latencyMs: 0,
      successRate: 1,
      claims: Object.fromEntries(this.inflight)
    }
  }

  private publishSelf (): void {
    this.doc?.setSelf(this.selfRecord())
  }

  /**
   * The converged view: every record, with this agent's link to that peer, its membership
   * state and the age of its last heartbeat.
   */
  view (): MeshView {
    const connected = new Set(this.mesh?.connectedPeers() ?? [])
    const now = Date.now()
    const nodes = (this.doc?.records() ?? []).map((n): ViewNode => {
      const self = n.peerId === this._peerId
      const member = self ? undefined : this.mesh?.membership.get(n.peerId)
      return {
        ...n,
        self,
        connected: self || connected.has(n.peerId),
        state: self ? 'alive' : member?.state ?? 'unknown',
        heartbeatAgeMs: self ? 0 : member != null ? now - member.lastHeardAt : null,
        metrics: self ? this.localMetrics() : member?.metrics ?? null
      }
    })
    return { self: this._peerId, nodes }
  }

  /** Counters of the mesh layer, for `GET /mesh/stats` and the benchmarks. */
  meshStats (): Record<string, unknown> {
    return {
      ...this.mesh?.stats,
      connections: this.mesh?.connectionCount() ?? 0,
      peers: this.mesh?.connectedPeers().length ?? 0,
      docBytes: this.doc?.snapshot().length ?? 0,
      rejectedUpdates: Object.fromEntries(this.doc?.rejected ?? [])
    }
  }

  /**
   * Peers a request may be sent to: connected, and alive or suspect. A connected peer not yet
   * heard on the metrics topic counts as usable: the live connection is proof enough.
   */
  private reachable (): Set<string> {
    const mesh = this.mesh
    if (mesh == null) return new Set()
    return new Set(mesh.connectedPeers().filter((p) => mesh.membership.get(p) == null || mesh.membership.isUsable(p)))
  }

  /** Local runners with their process details (port, pid, in flight), for the admin API. */
  localRunners (): RunnerDescription[] {
    return (this.manager?.runners() ?? []).map((r) => r.describe())
  }

  private localRunnerFor (model: string, preferred?: string): Runner {
    const runner = this.manager?.find(model, preferred)
    if (runner == null) throw new LlmeshError('NO_CAPACITY', `no ready runner for '${model}' on this host`)
    return runner
  }

  /**
   * Routes one request through the converged view and returns the target's response stream:
   * the local runner directly, or a peer's over `/llmesh/infer/1`.
   */
  async infer (reqId: string, path: RunnerPath, body: Record<string, unknown>, signal: AbortSignal): Promise<RoutedResponse> {
    const model = String(body['model'])
    const decision = route({
      model,
      nodes: this.doc?.records() ?? [],
      selfPeerId: this._peerId,
      reachable: this.reachable(),
      inflight: this.inflight,
      random: Math.random
    })
    if (!decision.ok) {
      const list = decision.available.length > 0 ? decision.available.join(', ') : 'none'
      throw new LlmeshError(decision.code, `${decision.message}; models in the mesh: ${list}`)
    }
    const { target } = decision
    this.log.debug({ reqId, model, target }, 'routed')
    this.claim(target.peerId, 1)
    let released = false
    const release = (): void => {
      if (released) return
      released = true
      this.claim(target.peerId, -1)
    }
    try {
      let res: RunnerResponse
      if (target.peerId === this._peerId) {
        res = await this.serveLocal(this.localRunnerFor(model, target.runnerId), path, body, signal)
      } else {
        const stream = await this.mesh!.open(target.peerId, INFER_PROTOCOL, signal)
        const remote = await requestInfer(stream, { id: reqId, path, model, runnerId: target.runnerId, body }, signal)
        res = { status: remote.head.status, contentType: remote.head.contentType, body: remote.body }
        target.runnerId = remote.head.runnerId
      }
      return { ...res, target, body: withFinally(res.body, release) }
    } catch (err) {
      release()
      throw err
    }
  }

  /** Runs a request on a local runner, counting it as served here until its body ends. */
  private async serveLocal (runner: Runner, path: RunnerPath, body: Record<string, unknown>, signal: AbortSignal): Promise<RunnerResponse> {
    this.serving++
    let res: RunnerResponse
    try {
      res = await runner.infer(path, body, signal)
    } catch (err) {
      this.serving--
      throw err
    }
    return { ...res, body: withFinally(res.body, () => { this.serving = Math.max(0, this.serving - 1) }) }
  }

  /** Counts this router's in-flight requests per target; never below zero. */
  private claim (peerId: string, delta: number): void {
    const next = Math.max(0, (this.inflight.get(peerId) ?? 0) + delta)
    if (next === 0) this.inflight.delete(peerId)
    else this.inflight.set(peerId, next)
  }

  private async saveSnapshot (): Promise<void> {
    if (this.doc == null) return
    try {
      await writeAtomic(join(this.config.dataDir, 'cluster.snapshot'), this.doc.snapshot())
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'snapshot not saved')
    }
  }

  async stop (): Promise<void> {
    clearInterval(this.snapshotTimer)
    await this.mesh?.leave()
    await this.http?.close()
    await this.manager?.stop()
    await this.saveSnapshot()
    await this.mesh?.stop()
    this.doc?.destroy()
    this.log.info('agent stopped')
  }
}

async function listen (http: FastifyInstance, host: string, port: number): Promise<string> {
  await http.listen({ host, port })
  const addr = http.server.address()
  if (addr == null || typeof addr === 'string') throw new Error('HTTP server has no TCP address')
  return `${host.includes(':') ? `[${host}]` : host}:${addr.port}`
}

async function writeAtomic (file: string, data: string | Uint8Array): Promise<void> {
  await writeFile(`${file}.tmp`, data)
  await rename(`${file}.tmp`, file)
}
