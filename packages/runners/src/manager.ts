import type { Llama } from 'node-llama-cpp'
import { LlmeshError, runnerServes, type Hardware, type Logger, type ModelInfo, type Signal } from '@llmesh/protocol'
import type { RunnerCommonInit } from './base-runner.js'
import { describeModel, scanModelDir, scanOllamaStore, type LocalModel } from './catalog.js'
import { DEFAULT_OLLAMA_REFRESH_MS, DEFAULT_OLLAMA_URL } from './constants.js'
import { EmbeddedRunner, loadLlama } from './embedded.js'
import { probeGpus, probeHardware, type GpuInfo, type GpuProbeOptions } from './hardware.js'
import { LlamaServerRunner } from './llama-server.js'
import { MlxRunner } from './mlx.js'
import { OllamaClient, OllamaRunner, ollamaTagToModelInfo, type OllamaTag } from './ollama.js'
import { RpcServerRunner } from './rpc-server.js'
import { supportsRpc } from './rpc-support.js'
import { parentDeathPrefix, processStartTime, type RunnerPidEntry } from './pid-file.js'
import { PortPicker } from './port.js'
import type { RunnerProcess, SpawnOptions } from './process.js'
import type { Runner, RunnerPath, RunnerResponse } from './runner.js'

/** One model this host serves from a GGUF file. */
export interface ModelSpec {
  path: string
  /** name clients use. @default the file name without .gguf */
  name?: string
  /** overrides of the manager-wide values */
  slots?: number
  ctxSize?: number
  gpuLayers?: number
  /** rpc-servers (host:port) holding part of the layers; llama-server only */
  rpc?: string[]
  /** with `rpc`: the blocks each rpc-server holds (the rest stay here) */
  rpcBlocks?: number[]
}

/** Supervision settings handed to every runner as they are (see RunnerCommonInit). */
type SupervisionInit = Pick<RunnerCommonInit, 'stallTimeoutMs' | 'firstTokenTimeoutMs' | 'nonStreamTimeoutMs' | 'stallsBeforeUnhealthy' | 'healthIntervalMs' | 'healthTimeoutMs' | 'healthFailures' | 'restart' | 'crashLoopFailures'>

/** Options of one `ensure` call. */
export interface EnsureOptions {
  /** stops this caller's wait (it rejects with the signal's reason); the load goes on for the others */
  signal?: Signal
  /** called once the model's runner exists (before it is ready), e.g. to publish it as loading */
  onRunner?: (runner: Runner) => void
  /**
   * a new runner coordinates a split of the model: its rpc-servers and the blocks each holds.
   * llama-server only.
   */
  split?: Required<Pick<ModelSpec, 'rpc' | 'rpcBlocks'>>
}

export interface RunnerManagerInit extends SupervisionInit {
  logger: Logger
  /** models served from start, one runner each */
  models?: ModelSpec[]
  /** folders scanned for GGUF files: catalog entries, served on demand by `ensure(model)` */
  modelDirs?: string[]
  /** Ollama's model store to list in the catalog (see `defaultOllamaStore()`); unset = not scanned */
  ollamaStore?: string
  /** the llama-server binary; unset = the embedded runner (node-llama-cpp) serves GGUF models */
  llamaServer?: { binary: string, threads?: number, extraArgs?: string[], routerChild?: boolean }
  /** embedded runner options (used when `llamaServer` is unset) */
  embedded?: { threads?: number, gpu?: 'auto' | false }
  /**
   * the rpc-server binary: this host can hold blocks of split models (`ensureRpcServer`), each
   * in an rpc-server on 127.0.0.1 that the mesh tunnels to. `cache`: tensors cached on disk
   * under `cacheDir`. unset: it holds none
   */
  rpcServer?: { binary: string, threads?: number, cache?: boolean, cacheDir?: string }
  /** adopt an Ollama server on this host. `url` @default http://127.0.0.1:11434 */
  ollama?: { url?: string, slots?: number, refreshMs?: number }
  /** adopt an mlx_lm.server; `model` is the mesh name of the model it was started with */
  mlx?: { url: string, model: string, upstreamModel?: string, slots?: number }
  /** slots per runner. @default 2 */
  slots?: number
  /** total context per runner, tokens. @default 4096 */
  ctxSize?: number
  /** layers on the GPU; unset leaves the engine's default */
  gpuLayers?: number
  /** @default 300000 ms */
  startTimeoutMs?: number
  /** prefix of runner ids, e.g. the end of the peer id, so ids are unique in the mesh. @default "" */
  idPrefix?: string
  /** probe GPUs at start (runs nvidia-smi, ...). @default true */
  probeGpus?: boolean | GpuProbeOptions
  /**
   * spawn runner processes under a parent-death signal (`setpriv --pdeathsig KILL`, where
   * present) so they die with the agent, even on SIGKILL. @default true
   */
  parentDeath?: boolean
  /** called with every runner process alive now, after each spawn and exit: the pid file's content */
  onProcesses?: (entries: RunnerPidEntry[]) => void
}

const KNOWN_KEYS = new Set<string>([
  'logger', 'models', 'modelDirs', 'ollamaStore', 'llamaServer', 'embedded', 'rpcServer', 'ollama', 'mlx', 'slots', 'ctxSize',
  'gpuLayers', 'startTimeoutMs', 'idPrefix', 'probeGpus', 'stallTimeoutMs', 'firstTokenTimeoutMs', 'nonStreamTimeoutMs',
  'stallsBeforeUnhealthy', 'healthIntervalMs', 'healthTimeoutMs', 'healthFailures', 'restart', 'crashLoopFailures', 'parentDeath', 'onProcesses'
])

function validate (init: RunnerManagerInit): void {
  const problems: string[] = []
  for (const k of Object.keys(init)) if (!KNOWN_KEYS.has(k)) problems.push(`${k}: unknown option`)
  const positive = ['slots', 'ctxSize', 'startTimeoutMs', 'stallTimeoutMs', 'firstTokenTimeoutMs', 'nonStreamTimeoutMs', 'stallsBeforeUnhealthy', 'healthIntervalMs', 'healthTimeoutMs', 'healthFailures', 'crashLoopFailures'] as const
  for (const k of positive) {
    const v = init[k]
    if (v != null && (typeof v !== 'number' || !(v > 0))) problems.push(`${k}: must be a positive number`)
  }
  const names = new Set<string>()
  for (const m of init.models ?? []) {
    if (typeof m.path !== 'string' || m.path === '') problems.push('models: every model needs a path')
    if (m.name != null) {
      if (names.has(m.name)) problems.push(`models: name '${m.name}' is used twice`)
      names.add(m.name)
    }
  }
  if (init.llamaServer != null && init.llamaServer.binary === '') problems.push('llamaServer.binary: must not be empty')
  if (problems.length > 0) throw new LlmeshError('INVALID_REQUEST', `invalid runner options:\n  ${problems.join('\n  ')}`)
}

/**
 * The runners of one host: builds them from a plain options object, starts them, restarts
 * them (each runner supervises itself), keeps the model catalog and the hardware facts, and
 * tells the agent on every change (`onChange`) so it republishes its NodeRecord.
 *
 * GGUF models use llama-server when its binary is configured, else the embedded llama.cpp.
 * A runner is started once per model and reused by every request; `ensure(model)` starts one
 * on demand for a catalog model that has none yet (one start per model, however many ask at
 * once), `stopRunner(id)` ends one. The runners' ports come from one PortPicker, so runners
 * starting at once never get the same one.
 */
export class RunnerManager {
  private readonly init: RunnerManagerInit
  private readonly log: Logger
  private readonly map = new Map<string, Runner>()
  /** the manager's listener on each runner, removed with it */
  private readonly unsubscribe = new Map<string, () => void>()
  /** `ensure` loads under way, by model: the one start concurrent callers share */
  private readonly loads = new Map<string, Promise<Runner>>()
  /** the llama-server binary reaches rpc-servers (probed at start) */
  private rpcClient = false
  private readonly ports = new PortPicker()
  private readonly listeners = new Set<() => void>()
  private catalog: LocalModel[] = []
  private ollamaTags: OllamaTag[] = []
  private ollamaClient?: OllamaClient
  private ollamaTimer?: NodeJS.Timeout
  private gpus?: GpuInfo[]
  private hw?: Hardware
  private llama?: Promise<Llama>
  private seq = 0
  private started = false
  private stopped = false
  /** runner processes alive now, by pid */
  private readonly processes = new Map<number, RunnerPidEntry>()
  /** shared by every runner; the prefix is resolved in `start` */
  private readonly spawnOptions: SpawnOptions

  constructor (init: RunnerManagerInit) {
    validate(init)
    this.init = init
    this.log = init.logger.child({ component: 'runners' })
    this.spawnOptions = {
      onSpawn: (proc) => { void this.recordProcess(proc) },
      onExit: (proc) => {
        if (proc.pid != null && this.processes.delete(proc.pid)) this.init.onProcesses?.([...this.processes.values()])
      }
    }
  }

  /** Adds a spawned process to the pid file once its start time is known (it identifies the pid). */
  private async recordProcess (proc: RunnerProcess): Promise<void> {
    const pid = proc.pid
    if (pid == null) return
    const startTime = await processStartTime(pid)
    if (startTime == null || !proc.alive) return
    this.processes.set(pid, { pid, binary: proc.binary, startTime })
    this.init.onProcesses?.([...this.processes.values()])
  }

  /** Runner options shared by every adapter. */
  private common (id: string): RunnerCommonInit {
    const i = this.init
    const c: RunnerCommonInit = { id, logger: this.init.logger }
    if (i.stallTimeoutMs != null) c.stallTimeoutMs = i.stallTimeoutMs
    if (i.firstTokenTimeoutMs != null) c.firstTokenTimeoutMs = i.firstTokenTimeoutMs
    if (i.nonStreamTimeoutMs != null) c.nonStreamTimeoutMs = i.nonStreamTimeoutMs
    if (i.stallsBeforeUnhealthy != null) c.stallsBeforeUnhealthy = i.stallsBeforeUnhealthy
    if (i.healthIntervalMs != null) c.healthIntervalMs = i.healthIntervalMs
    if (i.healthTimeoutMs != null) c.healthTimeoutMs = i.healthTimeoutMs
    if (i.healthFailures != null) c.healthFailures = i.healthFailures
    if (i.restart != null) c.restart = i.restart
    if (i.crashLoopFailures != null) c.crashLoopFailures = i.crashLoopFailures
    c.spawn = this.spawnOptions
    return c
  }

  private nextId (kind: string, name: string): string {
    const safe = name.replace(/[^\w.:-]+/g, '_').slice(0, 64)
    return `${this.init.idPrefix != null && this.init.idPrefix !== '' ? `${this.init.idPrefix}-` : ''}${this.seq++}-${kind}-${safe}`
  }

  /**
   * Builds the catalog (a configured model that cannot be read is a start error; a bad file in a
   * scanned folder is logged and skipped), probes the hardware, creates the runners and starts
   * them in the background. Resolves before they are ready: watch `onChange` or `waitReady`.
   */
  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    if (this.init.parentDeath !== false) {
      const prefix = await parentDeathPrefix()
      if (prefix != null) this.spawnOptions.parentDeathPrefix = prefix
      else this.log.info('no setpriv with --pdeathsig here: runners outliving a killed agent are reaped at its next start')
    }
    const configured = await Promise.all((this.init.models ?? []).map(async (m) => {
      try {
        return await describeModel(m.path, m.name)
      } catch (err) {
        throw new LlmeshError('INVALID_REQUEST', `model ${m.path}: ${(err as Error).message}`, { cause: err })
      }
    }))
    const onError = (path: string, err: Error): void => { this.log.warn({ path, err: err.message }, 'model skipped') }
    const scanned: LocalModel[] = []
    for (const dir of this.init.modelDirs ?? []) scanned.push(...await scanModelDir(dir, { onError }))
    if (this.init.ollamaStore != null) scanned.push(...await scanOllamaStore(this.init.ollamaStore, { onError }))
    const byName = new Map<string, LocalModel>()
    for (const m of [...configured, ...scanned]) if (!byName.has(m.info.name)) byName.set(m.info.name, m)
    this.catalog = [...byName.values()]

    if (this.init.llamaServer != null) this.rpcClient = await supportsRpc(this.init.llamaServer.binary)
    if (this.init.probeGpus !== false) {
      this.gpus = await probeGpus(typeof this.init.probeGpus === 'object' ? this.init.probeGpus : {})
    }

    for (const [i, model] of configured.entries()) this.add(this.ggufRunner(model, this.init.models?.[i]))
    if (this.init.mlx != null) {
      const m = this.init.mlx
      this.add(new MlxRunner({ ...this.common(this.nextId('mlx', m.model)), url: m.url, modelName: m.model, ...(m.upstreamModel != null ? { upstreamModel: m.upstreamModel } : {}), ...(m.slots != null ? { slots: m.slots } : {}) }))
    }
    if (this.init.ollama != null) {
      this.ollamaClient = new OllamaClient(this.init.ollama.url ?? DEFAULT_OLLAMA_URL)
      await this.refreshOllama()
      this.ollamaTimer = setInterval(() => { void this.refreshOllama() }, this.init.ollama.refreshMs ?? DEFAULT_OLLAMA_REFRESH_MS)
      this.ollamaTimer.unref()
    }
    for (const r of this.map.values()) this.launch(r)
    this.emit()
  }

  private ggufRunner (model: LocalModel, spec?: Omit<ModelSpec, 'path'>): Runner {
    const i = this.init
    const slots = spec?.slots ?? i.slots
    const ctxSize = spec?.ctxSize ?? i.ctxSize
    // a split coordinator offloads exactly its members' blocks (splitArgs)
    const gpuLayers = spec?.rpcBlocks != null ? undefined : spec?.gpuLayers ?? i.gpuLayers
    const opt = { ...(slots != null ? { slots } : {}), ...(ctxSize != null ? { ctxSize } : {}), ...(gpuLayers != null ? { gpuLayers } : {}) }
    if (i.llamaServer != null) {
      return new LlamaServerRunner({
        ...this.common(this.nextId('llama', model.info.name)),
        ...opt,
        binary: i.llamaServer.binary,
        ports: this.ports,
        modelPath: model.path,
        modelName: model.info.name,
        ...(i.llamaServer.threads != null ? { threads: i.llamaServer.threads } : {}),
        ...(i.llamaServer.extraArgs != null ? { extraArgs: i.llamaServer.extraArgs } : {}),
        ...(i.llamaServer.routerChild != null ? { routerChild: i.llamaServer.routerChild } : {}),
        ...(spec?.rpc != null ? { rpc: spec.rpc } : {}),
        ...(spec?.rpcBlocks != null ? { rpcBlocks: spec.rpcBlocks } : {}),
        ...(i.startTimeoutMs != null ? { startTimeoutMs: i.startTimeoutMs } : {})
      })
    }
    return new EmbeddedRunner({
      ...this.common(this.nextId('embedded', model.info.name)),
      ...opt,
      modelPath: model.path,
      modelName: model.info.name,
      ...(i.embedded?.threads != null ? { threads: i.embedded.threads } : {}),
      llama: async () => await this.sharedLlama()
    })
  }

  /** One node-llama-cpp instance for all embedded runners of this host. */
  private async sharedLlama (): Promise<Llama> {
    this.llama ??= loadLlama({ gpu: this.init.embedded?.gpu ?? 'auto' })
    this.llama.catch(() => { this.llama = undefined })
    return await this.llama
  }

  private add (runner: Runner): void {
    this.map.set(runner.id, runner)
    this.unsubscribe.set(runner.id, runner.onState(() => { this.emit() }))
  }

  /** Takes a runner out of the manager (its listener too); undefined when it was not in it. */
  private remove (id: string): Runner | undefined {
    const runner = this.map.get(id)
    if (runner == null) return undefined
    this.map.delete(id)
    this.unsubscribe.get(id)?.()
    this.unsubscribe.delete(id)
    return runner
  }

  private launch (runner: Runner): void {
    if (this.stopped) return
    runner.start().catch((err: unknown) => {
      this.log.error({ runner: runner.id, err: (err as Error).message }, 'runner failed to start')
    })
  }

  /** Re-reads Ollama's model list: runners for new models, stopped runners for removed ones. */
  async refreshOllama (): Promise<void> {
    const client = this.ollamaClient
    if (client == null) return
    let tags: OllamaTag[]
    try {
      tags = await client.tags()
    } catch (err) {
      this.log.warn({ url: client.url, err: (err as Error).message }, 'Ollama not reachable')
      return
    }
    let changed = JSON.stringify(tags.map((t) => [t.name, t.digest])) !== JSON.stringify(this.ollamaTags.map((t) => [t.name, t.digest]))
    this.ollamaTags = tags
    const names = new Set(tags.map((t) => t.name))
    for (const r of [...this.map.values()]) {
      if (r.kind === 'ollama' && !names.has(r.model)) {
        this.remove(r.id)
        await r.stop()
        changed = true
      }
    }
    for (const tag of tags) {
      if ([...this.map.values()].some((r) => r.kind === 'ollama' && r.model === tag.name)) continue
      const o = this.init.ollama ?? {}
      const runner = new OllamaRunner({ ...this.common(this.nextId('ollama', tag.name)), client, ollamaModel: tag.name, ...(o.slots != null ? { slots: o.slots } : {}) })
      this.add(runner)
      if (this.started) this.launch(runner)
      changed = true
    }
    if (changed) this.emit()
  }

  /** Stops every runner (they do not restart) and releases what the manager holds. */
  async stop (): Promise<void> {
    this.started = false
    this.stopped = true
    clearInterval(this.ollamaTimer)
    await Promise.all([...this.map.values()].map(async (r) => {
      await r.stop().catch((err: unknown) => { this.log.warn({ runner: r.id, err: (err as Error).message }, 'runner stop failed') })
    }))
    await this.ollamaClient?.close()
    const llama = this.llama
    this.llama = undefined
    if (llama != null) await (await llama.catch(() => undefined))?.dispose().catch(() => {})
  }

  /** Every runner of this host. */
  runners (): Runner[] {
    return [...this.map.values()]
  }

  get (id: string): Runner | undefined {
    return this.map.get(id)
  }

  /**
   * The runner to send a request for `model` to: `preferred` when it serves the model and is
   * ready, else the ready one with the least `load`. The load is the caller's: the agent passes
   * its admission's (busy and queued per slot), the one count of how busy a runner is; without
   * one, the first ready runner. Undefined when none can take requests now.
   */
  find (model: string, preferred?: string, load?: (runner: Runner) => number): Runner | undefined {
    const p = preferred != null ? this.map.get(preferred) : undefined
    if (p != null && p.model === model && p.state === 'ready') return p
    const candidates = [...this.map.values()].filter((r) => r.model === model && runnerServes(r) && r.state === 'ready')
    if (load != null) candidates.sort((a, b) => load(a) - load(b))
    return candidates[0]
  }

  /**
   * Sends a request to the best runner for `model`. MODEL_NOT_FOUND when this host has no
   * runner for it, NO_CAPACITY when its runners are starting, failed or stopped.
   */
  async infer (model: string, path: RunnerPath, body: Record<string, unknown>, signal?: Signal, preferred?: string): Promise<RunnerResponse & { runner: Runner }> {
    const runner = this.find(model, preferred)
    if (runner == null) {
      const all = [...this.map.values()].filter((r) => r.model === model)
      if (all.length === 0) throw new LlmeshError('MODEL_NOT_FOUND', `no runner for '${model}' on this host`)
      throw new LlmeshError('NO_CAPACITY', `no ready runner for '${model}' on this host (${all.map((r) => `${r.id}: ${r.state}`).join(', ')})`)
    }
    return { ...await runner.infer(path, body, signal), runner }
  }

  /** A model on this host's disk (configured or found in a scanned folder): its path and facts. */
  catalogModel (name: string): LocalModel | undefined {
    return this.catalog.find((m) => m.info.name === name)
  }

  /**
   * The runner for `model`, started on first use and reused afterwards (never one per request):
   * an existing runner of the model, else a new one for the catalog model. Resolves when it is
   * ready. Concurrent calls for one model share one start. Rejects with MODEL_NOT_FOUND when the
   * model has no runner and is not in the catalog, and with RUNNER_FAILED (its last error and
   * stderr tail) when the runner fails for good or is stopped while loading. A runner that has
   * already failed for good is not started again here, so requests cannot drive a crash loop:
   * `stopRunner` it first to try again. `opts.signal` detaches only this caller.
   */
  async ensure (model: string, opts: EnsureOptions = {}): Promise<Runner> {
    if (this.stopped) throw new LlmeshError('NO_CAPACITY', 'the runners of this host are stopping')
    if (opts.signal?.aborted === true) throw opts.signal.reason
    const existing = [...this.map.values()].find((r) => r.model === model && runnerServes(r))
    if (existing?.state === 'ready' && !this.loads.has(model)) {
      opts.onRunner?.(existing)
      return existing
    }
    if (opts.split != null && this.init.llamaServer == null) throw new LlmeshError('INVALID_REQUEST', `model '${model}' cannot be split here: this host runs models on the embedded runner, which has no RPC`)
    let load = this.loads.get(model)
    if (load == null) {
      load = this.load(model, existing, opts.split).finally(() => { this.loads.delete(model) })
      this.loads.set(model, load)
    }
    // the runner exists once load() has run to its first await: tell this caller then
    const runner = existing ?? [...this.map.values()].find((r) => r.model === model && runnerServes(r))
    if (runner != null) opts.onRunner?.(runner)
    return await detachable(load, opts.signal)
  }

  /** One ensure's start: the runner made (or taken) at once, then waited on until it settles. */
  private async load (model: string, existing: Runner | undefined, split?: EnsureOptions['split']): Promise<Runner> {
    let runner = existing
    if (runner == null) {
      const local = this.catalogModel(model)
      if (local == null) throw new LlmeshError('MODEL_NOT_FOUND', `no model '${model}' on this host`)
      runner = this.ggufRunner(local, split)
      this.add(runner)
      this.emit()
    }
    await settled(runner, model)
    return runner
  }

  /** What parts of a split model this host can take (see NodeRecord `split`). */
  splitRoles (): { coordinator: boolean, member: boolean } {
    return { coordinator: this.rpcClient, member: this.init.rpcServer != null }
  }

  /**
   * The rpc-server that holds this host's blocks of the split model `model`, started on first
   * use (one per model: an rpc-server serves one coordinator connection at a time) on
   * 127.0.0.1 only: it has no authentication, the mesh tunnels to it. Resolves when it accepts
   * connections. Concurrent calls share one start.
   */
  async ensureRpcServer (model: string): Promise<RpcServerRunner> {
    const rs = this.init.rpcServer
    if (rs == null) throw new LlmeshError('INVALID_REQUEST', 'this host has no rpc-server binary: it holds no blocks of split models')
    if (this.stopped) throw new LlmeshError('NO_CAPACITY', 'the runners of this host are stopping')
    let runner = this.rpcServerOf(model)
    if (runner == null) {
      runner = new RpcServerRunner({
        ...this.common(this.nextId('rpc', model)),
        ports: this.ports,
        binary: rs.binary,
        host: '127.0.0.1',
        model,
        ...(rs.threads != null ? { threads: rs.threads } : {}),
        ...(rs.cache != null ? { cache: rs.cache } : {}),
        ...(rs.cacheDir != null ? { cacheDir: rs.cacheDir } : {}),
        ...(this.init.startTimeoutMs != null ? { startTimeoutMs: this.init.startTimeoutMs } : {})
      })
      this.add(runner)
      this.emit()
    }
    await settled(runner, model)
    return runner
  }

  /** The rpc-server holding blocks of `model` here, if any. */
  rpcServerOf (model: string): RpcServerRunner | undefined {
    for (const r of this.map.values()) if (r instanceof RpcServerRunner && r.model === model) return r
    return undefined
  }

  /** Stops runner `id` for good and removes it from this host's runners (onChange hears of it). */
  async stopRunner (id: string): Promise<void> {
    const runner = this.remove(id)
    if (runner == null) return
    await runner.stop()
    this.emit()
  }

  /**
   * Resolves when every runner is ready; rejects after `timeoutMs` naming the ones
   * that are not.
   */
  async waitReady (timeoutMs = 60_000): Promise<void> {
    const ok = (): boolean => [...this.map.values()].every((r) => r.state === 'ready')
    if (ok()) return
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        off()
        reject(new LlmeshError('NO_CAPACITY', `runners not ready after ${timeoutMs} ms: ${[...this.map.values()].filter((r) => r.state !== 'ready').map((r) => `${r.id} ${r.state}${r.info().lastError != null ? ` (${r.info().lastError})` : ''}`).join(', ')}`))
      }, timeoutMs)
      const off = this.onChange(() => {
        if (!ok()) return
        clearTimeout(timer)
        off()
        resolve()
      })
    })
  }

  /** Models on this host for the NodeRecord: catalog entries plus what Ollama lists; no paths. */
  models (): ModelInfo[] {
    const out = new Map<string, ModelInfo>()
    for (const m of this.catalog) out.set(m.info.name, m.info)
    for (const t of this.ollamaTags) if (!out.has(t.name)) out.set(t.name, ollamaTagToModelInfo(t))
    return [...out.values()]
  }

  /** CPUs, RAM and the GPUs probed at start. */
  /** This host's hardware, probed once (os.cpus() is not cheap, and it is read on every publish). */
  hardware (): Hardware {
    this.hw ??= probeHardware(this.gpus)
    return this.hw
  }

  /** Called on every runner state change, runner added or removed, catalog change. */
  onChange (fn: () => void): () => void {
    this.listeners.add(fn)
    return () => { this.listeners.delete(fn) }
  }

  private emit (): void {
    for (const fn of this.listeners) {
      try {
        fn()
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'change listener threw')
      }
    }
  }
}

/** `promise`, or the signal's reason once it aborts (the promise itself goes on). */
async function detachable<T> (promise: Promise<T>, signal: Signal | undefined): Promise<T> {
  if (signal == null) return await promise
  if (signal.aborted) throw signal.reason
  return await new Promise<T>((resolve, reject) => {
    const onAbort = (): void => { reject(signal.reason) }
    signal.addEventListener('abort', onAbort, { once: true })
    promise.then(resolve, reject).finally(() => { signal.removeEventListener('abort', onAbort) })
  })
}

/**
 * Resolves when `r` is ready (starting it when stopped or failed), rejects with RUNNER_FAILED
 * (its last error and stderr tail) when it fails for good or is stopped while loading.
 */
async function settled (r: Runner, model: string): Promise<void> {
  const failed = (): LlmeshError => {
    const d = r.describe()
    const tail = d.stderrTail != null ? `\n${d.stderrTail}` : ''
    return new LlmeshError('RUNNER_FAILED', `runner ${r.id} for '${model}' failed: ${d.lastError ?? 'no reason given'}${tail}`)
  }
  if (r.state === 'failed' && r.describe().gaveUp === true) throw failed()
  await new Promise<void>((resolve, reject) => {
    const settle = (): boolean => {
      if (r.state === 'ready') resolve()
      else if (r.state === 'failed' && r.describe().gaveUp === true) reject(failed())
      else if (r.state === 'stopped') reject(new LlmeshError('RUNNER_FAILED', `runner ${r.id} for '${model}' was stopped while loading`))
      else return false
      return true
    }
    const off = r.onState(() => { if (settle()) off() })
    // a first start that fails is retried by the runner itself: the listener sees how it ends
    if (r.state === 'stopped' || r.state === 'failed') r.start().catch(() => {})
    if (settle()) off()
  })
}
