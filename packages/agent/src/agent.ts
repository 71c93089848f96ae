import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import { INFER_PROTOCOL, LlmeshError, PROTOCOL_VERSION, type InferPath, type NodeRecord, type PeerMetrics } from '@llmesh/protocol'
import { ClusterDoc } from '@llmesh/state'
import { Mesh, loadOrCreateKey, peerIdOfKey, serveInfer } from '@llmesh/mesh'
import { DEFAULT_PRIORITY, type RankedTarget, type ReportingPeer } from '@llmesh/scheduler'
import { DEFAULT_FIRST_TOKEN_TIMEOUT_MS, DEFAULT_NON_STREAM_TIMEOUT_MS, RunnerManager, type Runner, type RunnerDescription, type RunnerResponse } from '@llmesh/runners'
import { findLlamaServer } from './binaries.js'
import type { AgentConfig } from './config.js'
import { buildHttpServer } from './http.js'
import { Router, type DispatchRequest, type ForwardOptions, type Forwarded, type RoutedResponse } from './router.js'
import { LocalServing, QueueFullError, type AdmissionCounters } from './serving.js'
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

export type { RoutedResponse }

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
  private router?: Router
  /** admission and served-request figures of this host's runners (local and forwarded requests) */
  private serving?: LocalServing
  private servedSeq = 0
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
      ...(config.mlx != null ? { mlx: stripUndefined(config.mlx) } : {}),
      ...(llamaServer != null
        ? {
            llamaServer: {
              binary: llamaServer,
              ...(config.llamaServer.threads != null ? { threads: config.llamaServer.threads } : {}),
              ...(config.llamaServer.extraArgs.length > 0 ? { extraArgs: config.llamaServer.extraArgs } : {})
            }
          }
        : {}),
      slots: config.llamaServer.slots,
      ctxSize: config.llamaServer.ctxSize,
      ...(config.llamaServer.gpuLayers != null ? { gpuLayers: config.llamaServer.gpuLayers } : {}),
      stallTimeoutMs: config.stallTimeoutMs,
      ...(config.firstTokenTimeoutMs != null ? { firstTokenTimeoutMs: config.firstTokenTimeoutMs } : {})
    })
    this.serving = new LocalServing({ logger: this.log, queueCapacity: config.queue.capacity, slotsTotal: () => this.readySlots() })
    // the catalog is read before anything is published: a bad model path is a start error
    await this.manager.start()
    // runners flip busy/ready with every request, which the record does not show: publish only
    // when what the record shows changed (a runner ready, failed, added; the catalog)
    this.manager.onChange(() => {
      const sig = this.publishedSignature()
      if (sig === this.lastSignature) return
      this.lastSignature = sig
      this.publishSelf()
    })

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
      refreshSelf: () => { this.doc?.setSelf(this.selfRecord(), true) },
      inferLimits: { writeStallMs: config.limits.writeStallMs }
    })
    await this.mesh.start()
    const mesh = this.mesh
    this.router = new Router({
      selfPeerId: () => this._peerId,
      nodes: () => this.doc?.records() ?? [],
      members: () => this.reportingPeers(),
      reachable: () => this.reachable(),
      forward: async (target, opts) => await this.forward(target, opts),
      defaultStrategy: config.strategy,
      logger: this.log.child({ component: 'router' }),
      onClaimsChange: () => { this.mesh?.nudge() }
    })
    await mesh.handle(INFER_PROTOCOL, async (stream, remotePeer) => {
      const guard = { peer: remotePeer, limits: mesh.inferLimits }
      await serveInfer(stream, async (request, reply) => {
        this.log.debug({ reqId: request.id, peer: remotePeer, model: request.model }, 'serving forwarded request')
        const runner = this.localRunnerFor(request.model, request.runnerId)
        let res: RunnerResponse
        try {
          res = await this.serveLocal(runner, request.path, request.body, {
            id: `${remotePeer.slice(-8)}:${request.id}`,
            priority: request.priority ?? DEFAULT_PRIORITY,
            mayQueue: request.mayQueue === true,
            // a peer may ask for less queueing than this host allows, never for more
            deadline: Date.now() + Math.min(request.deadlineMs ?? config.queue.deadlineMs, config.queue.deadlineMs),
            signal: reply.signal
          })
        } catch (err) {
          // a full queue answers 429 with its Retry-After in the body: an error frame has no room for it
          if (!(err instanceof QueueFullError)) throw err
          await reply.head({ status: 429, contentType: 'application/json', runnerId: runner.id })
          await reply.data(new TextEncoder().encode(JSON.stringify({ error: { message: err.message, type: err.type, code: 'queue_full' }, retry_after_sec: err.retryAfterSec })))
          return
        }
        await reply.head({ status: res.status, contentType: res.contentType, runnerId: runner.id })
        for await (const chunk of res.body) await reply.data(chunk)
      }, guard)
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

  /** Slots of this host's ready runners. */
  private readySlots (): number {
    let slots = 0
    for (const r of this.manager?.runners() ?? []) if (r.state === 'ready' || r.state === 'busy') slots += r.info().slots
    return slots
  }

  /** The numbers this agent gossips in each heartbeat. */
  private localMetrics (): PeerMetrics {
    const slotsTotal = this.readySlots()
    const admission = this.serving?.snapshot() ?? { slotsBusy: 0, queueDepth: 0 }
    const served = this.serving?.figures() ?? { tokensPerSec: 0, latencyMs: 0, successRate: 1 }
    return {
      slotsBusy: admission.slotsBusy,
      slotsTotal,
      queueDepth: admission.queueDepth,
      tokensPerSec: served.tokensPerSec,
      latencyMs: served.latencyMs,
      successRate: served.successRate,
      ...(served.latencyDev != null ? { latencyDev: served.latencyDev } : {}),
      ...(served.tokensPerSecDev != null ? { tokensPerSecDev: served.tokensPerSecDev } : {}),
      claims: this.router?.claims.toRecord() ?? {}
    }
  }

  /** Every peer membership knows, and this host with its metrics as of now: `targetMetrics()`'s input. */
  private reportingPeers (): ReportingPeer[] {
    const peers: ReportingPeer[] = [...(this.mesh?.members() ?? [])]
    peers.push({ peerId: this._peerId, state: 'alive', lastHeardAt: Date.now(), metrics: this.localMetrics() })
    return peers
  }

  private lastSignature = ''

  /** What the published record says about runners and models, as one comparable string. */
  private publishedSignature (): string {
    const runners = (this.manager?.runners() ?? []).map((r) => `${r.id}:${r.state === 'busy' ? 'ready' : r.state}`)
    const models = (this.manager?.models() ?? []).map((m) => m.name)
    return `${runners.join(',')}|${models.join(',')}`
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
   * Routes one request through the converged view (scheduler `rank()`, failover, queueing when
   * every host is busy) and returns the target's response stream once its first chunk is in.
   */
  async infer (req: DispatchRequest): Promise<RoutedResponse> {
    if (this.router == null) throw new LlmeshError('NO_CAPACITY', 'the agent is not started')
    return await this.router.dispatch(req)
  }

  /** One attempt on one target: the local runners, or a peer's over `/llmesh/infer/1`. */
  private async forward (target: RankedTarget, opts: ForwardOptions): Promise<Forwarded> {
    if (target.peerId === this._peerId) {
      const runner = this.localRunnerFor(opts.model, target.runnerId)
      const res = await this.serveLocal(runner, opts.path, opts.body, {
        id: `self:${opts.id}:${++this.servedSeq}`, priority: opts.priority, mayQueue: opts.mayQueue, deadline: opts.deadline, signal: opts.signal
      })
      return { ...res, runnerId: runner.id }
    }
    const remote = await this.mesh!.infer(target.peerId, {
      id: opts.id,
      path: opts.path,
      model: opts.model,
      runnerId: target.runnerId,
      body: opts.body,
      priority: opts.priority,
      mayQueue: opts.mayQueue,
      deadlineMs: Math.max(0, Math.round(opts.deadline - Date.now()))
    }, opts.signal, this.peerTimeouts(opts))
    return { status: remote.head.status, contentType: remote.head.contentType, runnerId: remote.head.runnerId, body: remote.body }
  }

  /**
   * How long this agent waits on a peer for one forwarded request: silence bounds from
   * `limits`, and for the first token what an honest host may take (its queue wait when the
   * request may queue, then its runner's own first-token bound), plus one silence bound.
   */
  private peerTimeouts (opts: ForwardOptions): { headMs: number, gapMs: number, firstTokenMs: number } {
    const { limits } = this.config
    const runnerFirst = opts.body['stream'] === true ? this.config.firstTokenTimeoutMs ?? DEFAULT_FIRST_TOKEN_TIMEOUT_MS : DEFAULT_NON_STREAM_TIMEOUT_MS
    const queueWait = opts.mayQueue ? Math.max(0, opts.deadline - Date.now()) : 0
    return { headMs: limits.headTimeoutMs, gapMs: limits.frameGapMs, firstTokenMs: queueWait + runnerFirst + limits.headTimeoutMs }
  }

  /** Runs a request on a local runner once admission gives it a slot (see LocalServing). */
  private async serveLocal (runner: Runner, path: InferPath, body: Record<string, unknown>, opts: Parameters<LocalServing['serve']>[3]): Promise<RunnerResponse> {
    return await this.serving!.serve(runner, path, body, opts)
  }

  /** Admission counters per local runner (peaks included), for `GET /admin/admission`. */
  admission (): AdmissionCounters[] {
    return this.serving?.counters() ?? []
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
    this.serving?.stop()
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

function stripUndefined<T extends object> (o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T
}
