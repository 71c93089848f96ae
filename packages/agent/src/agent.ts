import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import { INFER_PROTOCOL, LlmeshError, MAX_CACHE_KEYS, MAX_METRICS_MODELS, PROTOCOL_VERSION, type Components, type EffectivePin, type PeerMetrics, type UnsignedNodeRecord } from '@llmesh/protocol'
import { Abort } from '@llmesh/kit'
import type { ClusterDoc } from '@llmesh/state'
import { Mesh, checkPrivateFile, ensurePrivateDir, loadOrCreateKey, peerIdOfKey, recordSigner, recordVerifier, removeStaleTempFiles } from '@llmesh/mesh'
import type { DispatchView, PlacementView, ReportingPeer } from '@llmesh/scheduler'
import { RunnerManager, formatPidFile, isRunning, readPidFile, reapRunners, selfStamp, type ProcessStamp, type RunnerDescription } from '@llmesh/runners'
import { findLlamaServer, findRpcServer } from './binaries.js'
import { ConfigError, type AgentConfig } from './config.js'
import { ApiKeyStore, apiKeysPath, buildHttpServer, type AgentPort, type MeshView, type LocalPlacement, type ViewNode, type ViewPlacement } from './api/index.js'
import { Placements } from './placement.js'
import { Router, type DispatchRequest, type RoutedResponse } from './router.js'
import { LocalForwarder, PeerForwarder } from './forwarders.js'
import { inferServer } from './infer-server.js'
import { systemClock } from '@llmesh/kit'
import { LocalServing, type AdmissionCounters } from './serving.js'
import { RequestEvents } from './request-events.js'
import { AGENT_INFO_FILE, AGENT_VERSION, DEFAULT_API_HOST, PROGRESS_STEP, RPC_CACHE_DIR, SHUTDOWN_FORCE_MS, SNAPSHOT_INTERVAL_MS } from './constants.js'
import { DurableFile, openClusterDoc } from './persist.js'
import { resolveClusterTrust, type ClusterTrust } from './cluster-trust.js'
import { isLoopbackHost } from './loopback.js'

/** What `agent.json` in the data dir says about a running agent; the CLI reads it. */
export interface AgentInfo {
  peerId: string
  name: string
  clusterId: string
  api: string
  addrs: string[]
  pid: number
  startedAt: number
}

export type { RoutedResponse }

/**
 * One llmesh agent: mesh node, cluster document, local runners and the HTTP API, wired
 * together. Policy lives in the scheduler; this class only carries it out.
 */
export class Agent implements AgentPort {
  readonly config: Readonly<AgentConfig>
  readonly log: Logger
  /** time, randomness and the logger, built once here and passed to every part of the request path */
  private readonly components: Components
  private mesh?: Mesh
  private doc?: ClusterDoc
  private http?: FastifyInstance
  private manager?: RunnerManager
  private router?: Router
  /** admission and served-request figures of this host's runners (local and forwarded requests) */
  private serving?: LocalServing
  /** which models this host runs: starts, evictions, pins, replicas, its placements entry */
  private placements?: Placements
  private readonly startedAt: number
  private snapshotTimer?: NodeJS.Timeout
  private apiAddress = ''
  private _peerId = ''
  private trust?: ClusterTrust
  /** the data dir's files this agent rewrites, one durable write at a time each */
  private readonly files: { snapshot: DurableFile, info: DurableFile, pids: DurableFile }
  /** aborts every request in flight (HTTP clients and peers) when the agent stops */
  private readonly inflight = new Set<Abort>()
  private starting?: Promise<AgentInfo>
  private stopping?: Promise<void>
  /** this process as the pid file names it (Linux), once the data dir is ours */
  private stamp?: ProcessStamp
  /** set while a stop waits for the requests in flight to finish */
  private drained?: () => void
  /** the API keys (hashes) of the data dir, re-read when the file changes */
  readonly apiKeys: ApiKeyStore
  /** every request taken on this agent's API, once it ended (the dashboard, the metrics) */
  readonly requests: RequestEvents

  /** `components` replaces the system clock or Math.random (tests) */
  constructor (config: Readonly<AgentConfig>, logger: Logger, components: Partial<Pick<Components, 'clock' | 'random'>> = {}) {
    this.config = config
    this.log = logger
    this.components = { clock: components.clock ?? systemClock, random: components.random ?? Math.random, logger }
    this.startedAt = this.components.clock.now()
    this.requests = new RequestEvents({ clock: this.components.clock, self: () => this._peerId, defaultStrategy: config.strategy })
    this.files = {
      snapshot: new DurableFile(join(config.dataDir, 'cluster.snapshot')),
      info: new DurableFile(join(config.dataDir, AGENT_INFO_FILE)),
      pids: new DurableFile(join(config.dataDir, 'runners.pid'))
    }
    this.apiKeys = new ApiKeyStore(apiKeysPath(config.dataDir), {
      onError: (err) => { this.log.error({ err: err.message }, 'API keys file unreadable: every API key is refused until it reads') }
    })
  }

  get peerId (): string { return this._peerId }
  get apiUrl (): string { return `http://${this.apiAddress}` }

  /** Starts the agent once; a `stop()` meanwhile waits for the start to settle, then undoes it. */
  async start (): Promise<AgentInfo> {
    this.starting ??= this.startOnce()
    return await this.starting
  }

  private async startOnce (): Promise<AgentInfo> {
    const { config } = this
    const dirWarning = await ensurePrivateDir(config.dataDir)
    if (dirWarning != null) this.log.warn({ dataDir: config.dataDir }, dirWarning)
    const previous = await readPidFile(this.files.pids.path)
    if (previous.agent != null && previous.agent.pid !== process.pid && await isRunning(previous.agent)) {
      throw new ConfigError(`another llmesh agent (pid ${previous.agent.pid}) runs with the data dir ${config.dataDir}: stop it, or give this agent its own --data-dir`)
    }
    await this.apiKeys.load()
    if (!isLoopbackHost(config.api.host) && this.apiKeys.size === 0) {
      throw new LlmeshError('UNAUTHORIZED', `the API would listen on ${config.api.host}, off loopback, and no API key exists: create one with 'llmesh apikey add --data-dir ${config.dataDir}', or keep the API on ${DEFAULT_API_HOST}`)
    }
    const privateKey = await loadOrCreateKey(join(config.dataDir, 'peer.key'))
    this._peerId = peerIdOfKey(privateKey)
    this.trust = await resolveClusterTrust(config, async (file) => { await checkPrivateFile(file, 'cluster key') })
    this.logTrust(this.trust)
    // every record is signed by its owner and checked against its peer id, whatever path it came by
    this.doc = await openClusterDoc(this.files.snapshot.path, this._peerId, this.log, { verifier: recordVerifier(), signer: recordSigner(privateKey) })
    const stale = await removeStaleTempFiles(config.dataDir)
    if (stale.length > 0) this.log.info({ files: stale }, 'removed temp files of an interrupted write')
    // runners a killed run of this agent left behind go before new ones start: never two per model
    await reapRunners(previous.runners, this.log)
    this.stamp = await selfStamp()
    await this.files.pids.save(() => this.pidFile([]))

    // llama-server when one is configured or on PATH, else the embedded llama.cpp (zero setup)
    const llamaServer = await findLlamaServer(config.llamaServer.binary)
    if (llamaServer == null && (config.models.length > 0 || config.modelDirs.length > 0)) {
      this.log.info('no llama-server binary found: models run on the embedded llama.cpp (node-llama-cpp)')
    }
    const rpcServer = await findRpcServer(config.rpcServer.binary, llamaServer)
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
              ...(config.llamaServer.extraArgs.length > 0 ? { extraArgs: config.llamaServer.extraArgs } : {}),
              ...(!config.llamaServer.routerChild ? { routerChild: false } : {})
            }
          }
        : {}),
      ...(rpcServer != null
        ? {
            rpcServer: {
              binary: rpcServer,
              cache: config.rpcServer.cache,
              cacheDir: config.rpcServer.cacheDir ?? join(config.dataDir, RPC_CACHE_DIR),
              ...(config.rpcServer.threads != null ? { threads: config.rpcServer.threads } : {})
            }
          }
        : {}),
      slots: config.llamaServer.slots,
      ctxSize: config.llamaServer.ctxSize,
      ...(config.llamaServer.gpuLayers != null ? { gpuLayers: config.llamaServer.gpuLayers } : {}),
      stallTimeoutMs: config.stallTimeoutMs,
      // LLMESH_RUNNER_PDEATHSIG=0 spawns runners without the parent-death signal (tests of the pid file)
      parentDeath: process.env['LLMESH_RUNNER_PDEATHSIG'] !== '0',
      onProcesses: (runners) => { this.saveFile(this.files.pids, () => this.pidFile(runners)) },
      ...(config.firstTokenTimeoutMs != null ? { firstTokenTimeoutMs: config.firstTokenTimeoutMs } : {})
    })
    const { clock, random } = this.components
    this.serving = new LocalServing({ logger: this.log, clock, queueCapacity: config.queue.capacity, slotsTotal: () => this.readySlots(), onNewConversation: () => { this.mesh?.nudge(true) } })
    // the catalog is read before anything is published: a bad model path is a start error
    await this.manager.start()
    const manager = this.manager
    this.placements = new Placements({
      config: config.placement,
      ctxSize: config.llamaServer.ctxSize,
      manager,
      serving: this.serving,
      doc: this.doc,
      selfPeerId: this._peerId,
      // the models named at start (`--model`) are kept here like pins
      configured: new Set(manager.runners().filter((r) => r.kind === 'llama-server' || r.kind === 'embedded').map((r) => r.model)),
      snapshot: () => this.placementSnapshot(this.components.clock.now()),
      // the mesh starts below; a split opens tunnels only once requests come
      tunnels: {
        listen: async (peer, model) => {
          if (this.mesh == null) throw new LlmeshError('NO_CAPACITY', 'the agent is not started')
          return await this.mesh.rpc.listen(peer, model)
        },
        closePeer: (peer) => { this.mesh?.rpc.closePeer(peer) }
      },
      clock,
      logger: this.log
    })
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
      ...(this.trust.key != null ? { clusterKey: this.trust.key } : {}),
      privateKey,
      listen: config.p2p.listen,
      bootstrap: config.p2p.bootstrap,
      doc: this.doc,
      logger: this.log,
      clock,
      random,
      mdns: { enabled: config.p2p.mdns, intervalMs: config.p2p.mdnsIntervalMs },
      heartbeatIntervalMs: config.p2p.heartbeatIntervalMs,
      timings: config.membership,
      incarnation: this.startedAt,
      metrics: () => this.localMetrics(),
      refreshSelf: () => { this.doc?.setSelf(this.selfRecord(), true) },
      inferLimits: { writeStallMs: config.limits.writeStallMs }
    })
    await this.mesh.start()
    const placements = this.placements
    // a member's rpc-server is reached only by the coordinator whose signed plan names this host
    await this.mesh.rpc.serve(async (peer, model) => await placements.resolveTunnel(peer, model))
    const local = new LocalForwarder({ serving: this.serving, runners: placements })
    placements.start()
    this.router = new Router({
      view: { dispatchView: (now) => this.dispatchView(now) },
      local,
      remote: new PeerForwarder({
        mesh: this.mesh,
        limits: config.limits,
        ...(config.firstTokenTimeoutMs != null ? { firstTokenTimeoutMs: config.firstTokenTimeoutMs } : {}),
        clock
      }),
      defaultStrategy: config.strategy,
      ctxSize: config.llamaServer.ctxSize,
      logger: this.log.child({ component: 'router' }),
      clock,
      random,
      onClaimsChange: () => { this.mesh?.nudge() }
    })
    await this.mesh.handle(INFER_PROTOCOL, inferServer({
      local,
      limits: this.mesh.inferLimits,
      queueDeadlineMs: config.queue.deadlineMs,
      track: (abort) => this.trackRequest(abort),
      logger: this.log,
      clock
    }))

    this.http = buildHttpServer({
      ...config.api, strategy: config.strategy, deadlineMs: config.queue.deadlineMs, writeStallMs: config.limits.writeStallMs, clock, loadAnyway: config.placement.loadAnyway
    }, this, this.log)
    this.apiAddress = await listen(this.http, config.api.host, config.api.port)
    this.publishSelf()

    this.snapshotTimer = setInterval(() => { void this.saveSnapshot() }, SNAPSHOT_INTERVAL_MS)
    this.snapshotTimer.unref()

    const info: AgentInfo = {
      peerId: this._peerId,
      name: config.name,
      clusterId: config.clusterId,
      api: this.apiUrl,
      addrs: this.mesh.addrs(),
      pid: process.pid,
      startedAt: this.startedAt
    }
    await this.files.info.save(() => JSON.stringify(info, null, 2))
    this.log.info(info, 'agent ready')
    return info
  }

  private logTrust (trust: ClusterTrust): void {
    const { clusterId } = this.config
    if (trust.mode === 'open') {
      this.log.warn({ clusterId }, 'open mesh: listening off loopback without a cluster key; any host on this network that knows the cluster id can join, read the cluster document and receive requests')
    } else if (trust.created) {
      this.log.info({ keyFile: trust.keyFile, keyId: trust.keyId }, "created a cluster key: hosts without it cannot connect; run 'llmesh invite' on this host for a token other hosts join with ('llmesh up --join TOKEN')")
    } else {
      this.log.info({ mode: trust.mode, ...(trust.keyId != null ? { keyId: trust.keyId } : { clusterId }) }, 'cluster trust')
    }
  }

  /** How this agent's connections are protected, for the view and `llmesh status`. */
  trustInfo (): { mode: ClusterTrust['mode'], keyId?: string } {
    const t = this.trust
    if (t == null) return { mode: 'home' }
    return { mode: t.mode, ...(t.keyId != null ? { keyId: t.keyId } : {}) }
  }

  /** This agent's record, as published into the cluster document (which signs it). */
  selfRecord (): UnsignedNodeRecord {
    return {
      peerId: this._peerId,
      name: this.config.name,
      version: AGENT_VERSION,
      protocol: PROTOCOL_VERSION,
      addrs: this.mesh?.addrs() ?? [],
      api: this.apiAddress,
      hardware: this.manager != null
        ? { ...this.manager.hardware(), ...(this.placements != null ? { modelMemBytes: this.placements.budget() } : {}) }
        : { cpus: 0, memBytes: 0, platform: process.platform, arch: process.arch },
      ...(this.manager != null ? { split: this.manager.splitRoles() } : {}),
      models: this.manager?.models() ?? [],
      // a runner is 'ready' while it serves: the record says "serving", the heartbeats say how busy
      runners: (this.manager?.runners() ?? []).map((r) => r.info()),
      startedAt: this.startedAt,
      updatedAt: this.components.clock.now()
    }
  }

  /** Slots of this host's ready runners. */
  private readySlots (): number {
    let slots = 0
    for (const r of this.manager?.runners() ?? []) if (r.state === 'ready') slots += r.info().slots
    return slots
  }

  /** The numbers this agent gossips in each heartbeat. */
  private localMetrics (): PeerMetrics {
    return { ...this.servingMetrics(), claims: this.router?.claims.toRecord() ?? {} }
  }

  /** What this host's runners serve now: the heartbeat's figures but the router's claims. */
  private servingMetrics (): Omit<PeerMetrics, 'claims'> {
    const admission = this.serving?.snapshot() ?? { slotsBusy: 0, slotsTotal: this.readySlots(), queueDepth: 0 }
    const served = this.serving?.figures() ?? { tokensPerSec: 0, latencyMs: 0, successRate: 1 }
    const models = this.serving?.modelFigures(MAX_METRICS_MODELS) ?? []
    const cache = this.serving?.cacheKeys(MAX_CACHE_KEYS) ?? []
    const prefill = this.serving?.prefillRate()
    return {
      ...(models.length > 0 ? { models } : {}),
      ...(cache.length > 0 ? { cache } : {}),
      ...(prefill != null ? { prefillTokensPerSec: prefill } : {}),
      slotsBusy: admission.slotsBusy,
      slotsTotal: admission.slotsTotal,
      queueDepth: admission.queueDepth,
      tokensPerSec: served.tokensPerSec,
      latencyMs: served.latencyMs,
      successRate: served.successRate,
      ...(served.latencyDev != null ? { latencyDev: served.latencyDev } : {}),
      ...(served.tokensPerSecDev != null ? { tokensPerSecDev: served.tokensPerSecDev } : {})
    }
  }

  /**
   * The mesh as the router ranks it, once per round: every record, every peer membership knows
   * and this host with its figures as of `now` (its claims are the router's own), and the peers
   * a request may be sent to.
   */
  private dispatchView (now: number): DispatchView {
    const peers: ReportingPeer[] = [...(this.mesh?.members() ?? [])]
    peers.push({ peerId: this._peerId, state: 'alive', lastHeardAt: now, metrics: this.servingMetrics() })
    return {
      now,
      selfPeerId: this._peerId,
      nodes: this.doc?.records() ?? [],
      peers,
      reachable: this.reachable(),
      placements: this.doc?.placements() ?? new Map(),
      pins: this.placements?.effectivePins() ?? []
    }
  }

  /** The mesh as placement decides on it (which host starts a model, where replicas go), and the peers' figures. */
  private placementSnapshot (now: number): { view: PlacementView, peers: readonly ReportingPeer[] } {
    const v = this.dispatchView(now)
    return {
      view: { selfPeerId: v.selfPeerId, nodes: v.nodes, placements: v.placements ?? new Map(), pins: v.pins ?? [], reachable: v.reachable },
      peers: v.peers
    }
  }

  /** This host's placements with the steps of their last start. */
  localPlacements (): LocalPlacement[] {
    return this.placements?.placements() ?? []
  }

  /** The pins in effect over the mesh. */
  pins (): EffectivePin[] {
    return this.placements?.effectivePins() ?? []
  }

  /** Pins or unpins a model on a host named by peer id or node name (anywhere when absent). */
  setPin (model: string, host: string | undefined, pinned: boolean): EffectivePin[] {
    if (this.placements == null) throw new LlmeshError('NO_CAPACITY', 'the agent is not started')
    let peerId: string | undefined
    if (host != null) {
      const records = this.doc?.records() ?? []
      peerId = records.find((n) => n.peerId === host)?.peerId ?? records.find((n) => n.name === host)?.peerId
      if (peerId == null) throw new LlmeshError('INVALID_REQUEST', `no host '${host.slice(0, 128)}' in the mesh (give a peer id or a node name of llmesh status)`)
    }
    return this.placements.setPin(model, peerId, pinned)
  }

  private lastSignature = ''

  /** What the published record says about runners and models, as one comparable string. */
  private publishedSignature (): string {
    // load progress in PROGRESS_STEP steps: each one is a record write every peer receives
    const runners = (this.manager?.runners() ?? []).map((r) => {
      const p = r.info().progress
      return `${r.id}:${r.state}${p != null ? `:${Math.floor(p / PROGRESS_STEP)}` : ''}`
    })
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
    const now = this.components.clock.now()
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
    const placements: ViewPlacement[] = []
    for (const [peerId, entry] of this.doc?.placements() ?? []) for (const p of entry.placements) placements.push({ peerId, ...p })
    return { self: this._peerId, trust: this.trustInfo(), nodes, placements, pins: this.pins() }
  }

  /** Counters of the mesh layer, for `GET /mesh/stats` and the benchmarks. */
  meshStats (): Record<string, unknown> {
    this.doc?.records() // verdicts on stored records are counted when the view is built
    return {
      ...this.mesh?.stats,
      connections: this.mesh?.connectionCount() ?? 0,
      peers: this.mesh?.connectedPeers().length ?? 0,
      docBytes: this.doc?.snapshot().length ?? 0,
      rejectedUpdates: Object.fromEntries(this.doc?.rejected ?? []),
      invalidRecords: Object.fromEntries(this.doc?.stats.invalidRecords ?? []),
      selfRewrites: this.doc?.stats.selfRewrites ?? 0,
      // llama.cpp RPC tunnel streams refused, by reason
      rpcRefused: { ...this.mesh?.rpc.refused },
      keptAfterForeignChange: this.doc?.stats.keptAfterForeignChange ?? 0,
      pendingDropped: this.doc?.stats.pendingDropped ?? 0
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

  /**
   * Routes one request through the converged view (scheduler `rank()`, failover, queueing when
   * every host is busy) and returns the target's response stream once its first chunk is in.
   */
  async infer (req: DispatchRequest): Promise<RoutedResponse> {
    const router = this.router
    if (router == null) throw new LlmeshError('NO_CAPACITY', 'the agent is not started')
    return await this.requests.observe(req, async (r) => await router.dispatch(r))
  }

  /** Admission counters per local runner (peaks included), for `GET /admin/admission`. */
  admission (): AdmissionCounters[] {
    return this.serving?.counters() ?? []
  }

  /** Saves the cluster document to the data dir (durable; concurrent saves coalesce). */
  async saveSnapshot (): Promise<void> {
    const doc = this.doc
    if (doc == null) return
    try {
      await this.files.snapshot.save(() => doc.snapshot())
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'snapshot not saved')
    }
  }

  /** runners.pid's content: this agent (while it runs) and its runner processes. */
  private pidFile (runners: Parameters<typeof formatPidFile>[0]['runners']): string {
    return formatPidFile({ ...(this.stamp != null ? { agent: this.stamp } : {}), runners })
  }

  private saveFile (file: DurableFile, content: () => string): void {
    file.save(content).catch((err: unknown) => { this.log.warn({ file: file.path, err: (err as Error).message }, 'file not saved') })
  }

  /**
   * Registers a request in flight so that stopping the agent can end it with an error; returns
   * the function that forgets it (call it when the request is done).
   */
  trackRequest (abort: Abort): () => void {
    if (this.stopping != null) abort.abort(shuttingDown())
    this.inflight.add(abort)
    return () => {
      if (this.inflight.delete(abort) && this.inflight.size === 0) this.drained?.()
    }
  }

  /**
   * Stops the agent within a bound: new requests are refused at once, requests in flight get
   * `config.shutdownGraceMs` to finish, then end with an error (an SSE stream gets an error
   * event, a peer an error frame), and connections still open SHUTDOWN_FORCE_MS later are cut.
   * Every runner is stopped, one being restarted included. Calling it again joins the first call.
   */
  async stop (): Promise<void> {
    this.stopping ??= this.shutdown()
    await this.stopping
  }

  private async shutdown (): Promise<void> {
    await this.starting?.catch(() => {})
    clearInterval(this.snapshotTimer)
    this.serving?.stop()
    this.placements?.stop()
    await this.mesh?.leave()
    // no new requests from here; those in flight get the grace, then an error
    const closing = this.http?.close()
    if (this.inflight.size > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, this.config.shutdownGraceMs)
        this.drained = () => { clearTimeout(timer); resolve() }
      })
    }
    for (const abort of this.inflight) abort.abort(shuttingDown())
    const cut = setTimeout(() => { this.http?.server.closeAllConnections() }, SHUTDOWN_FORCE_MS)
    try {
      await closing
    } finally {
      clearTimeout(cut)
    }
    await this.manager?.stop()
    await this.saveSnapshot()
    // every runner has exited: nothing left to reap (a start refused before runners wrote nothing)
    if (this.stamp != null) await this.files.pids.save(() => formatPidFile({ runners: [] })).catch(() => {})
    await this.mesh?.stop()
    this.doc?.destroy()
    this.log.info('agent stopped')
  }
}

function shuttingDown (): LlmeshError {
  return new LlmeshError('NO_CAPACITY', 'the agent is shutting down')
}

async function listen (http: FastifyInstance, host: string, port: number): Promise<string> {
  await http.listen({ host, port })
  const addr = http.server.address()
  if (addr == null || typeof addr === 'string') throw new Error('HTTP server has no TCP address')
  return `${host.includes(':') ? `[${host}]` : host}:${addr.port}`
}

function stripUndefined<T extends object> (o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T
}
