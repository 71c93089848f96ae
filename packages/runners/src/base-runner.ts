import type { Pool } from 'undici'
import type { Logger } from '@llmesh/protocol'
import { LlmeshError, type RunnerInfo, type RunnerState, type Signal } from '@llmesh/protocol'
import { Abort, backoffDelay } from '@llmesh/kit'
import {
  DEFAULT_FIRST_TOKEN_TIMEOUT_MS,
  DEFAULT_HEALTH_FAILURES,
  DEFAULT_HEALTH_INTERVAL_MS,
  DEFAULT_CRASH_LOOP_FAILURES,
  DEFAULT_HEALTH_TIMEOUT_MS,
  DEFAULT_NON_STREAM_TIMEOUT_MS,
  DEFAULT_RESTART_FACTOR,
  DEFAULT_RESTART_JITTER,
  DEFAULT_RESTART_MAX_DELAY_MS,
  DEFAULT_RESTART_MIN_DELAY_MS,
  DEFAULT_SLOTS,
  DEFAULT_STALL_TIMEOUT_MS,
  DEFAULT_STALLS_BEFORE_UNHEALTHY,
  LOAD_PROGRESS_STEP,
  RESTART_RESET_AFTER_MS
} from './constants.js'
import type {
  Runner,
  RunnerCapacity,
  RunnerDescription,
  RunnerHealth,
  RunnerPath,
  RunnerResponse,
  RunnerStateListener
} from './runner.js'
import { requestPaced, requestWhole } from './paced.js'
import type { SpawnOptions } from './process.js'
import { watchStalls } from './stall.js'

/** A runner's restart delays: the one backoff of `@llmesh/kit` with a fractional jitter. */
export interface RestartBackoffInit {
  /** first delay, ms. @default DEFAULT_RESTART_MIN_DELAY_MS (500 ms) */
  minDelayMs?: number
  /** cap, ms. @default DEFAULT_RESTART_MAX_DELAY_MS (60000 ms) */
  maxDelayMs?: number
  /** growth per attempt. @default DEFAULT_RESTART_FACTOR (2) */
  factor?: number
  /** fraction of random spread, delay x (1 ± jitter). @default DEFAULT_RESTART_JITTER (0.2) */
  jitter?: number
}

/**
 * Delay before restart number `attempt` (0-based), ms:
 * `min(maxDelayMs, minDelayMs x factor^attempt) x (1 + jitter x (2 random() - 1))`, rounded.
 */
export function restartDelay (attempt: number, init: RestartBackoffInit = {}, random?: () => number): number {
  return backoffDelay(Math.max(0, attempt) + 1, {
    baseMs: init.minDelayMs ?? DEFAULT_RESTART_MIN_DELAY_MS,
    maxMs: init.maxDelayMs ?? DEFAULT_RESTART_MAX_DELAY_MS,
    factor: init.factor ?? DEFAULT_RESTART_FACTOR,
    jitter: init.jitter ?? DEFAULT_RESTART_JITTER
  }, random)
}

/** Options every runner takes: identity, stall detection, health checks, restart policy. */
export interface RunnerCommonInit {
  id: string
  logger: Logger
  /** parallel requests the runner serves. @default 2 (adapters may differ) */
  slots?: number
  /** no chunk for this long in a started stream aborts it with STALLED. @default 30000 ms */
  stallTimeoutMs?: number
  /** wait for the head and first chunk of a streaming response. @default 120000 ms */
  firstTokenTimeoutMs?: number
  /** whole-response limit of a non-streaming request. @default 600000 ms */
  nonStreamTimeoutMs?: number
  /** consecutive stalls that mark the runner failed (and restart it). @default 3 */
  stallsBeforeUnhealthy?: number
  /** interval of health checks while ready. @default 5000 ms */
  healthIntervalMs?: number
  /** one health check's time limit. @default 3000 ms */
  healthTimeoutMs?: number
  /** consecutive failed health checks that count as a crash. @default 3 */
  healthFailures?: number
  /** restart delays; `false` disables restarting (a failed runner stays failed). */
  restart?: RestartBackoffInit | false
  /**
   * failures in a row (none after being ready for RESTART_RESET_AFTER_MS) after which the runner
   * stops restarting and stays 'failed'. @default DEFAULT_CRASH_LOOP_FAILURES (5)
   */
  crashLoopFailures?: number
  /** random source of the restart jitter (tests inject one). @default Math.random */
  random?: () => number
  /** how runner processes are spawned (parent-death signal) and who hears of them (pid file) */
  spawn?: SpawnOptions
}

/** What a runner serving one GGUF file needs, whatever the engine. */
export interface GgufRunnerInit extends RunnerCommonInit {
  modelPath: string
  /** name the mesh knows the model by (llama-server gets it as `--alias`) */
  modelName: string
  /** parallel slots (`--parallel`, or embedded sequences). @default 2 */
  slots?: number
  /** total context (`-c`), shared by the slots. @default 4096 tokens */
  ctxSize?: number
  /** layers on the GPU (`-ngl`); undefined leaves the engine's default */
  gpuLayers?: number
  /** CPU threads (`-t`); undefined leaves the engine's default */
  threads?: number
}

/**
 * What an adapter's `open` returns: the upstream response before stall watching. A body given
 * as bytes was read whole (a non-streaming answer): nothing is left to wait for, so it is not
 * stall-watched.
 */
export interface UpstreamResponse {
  status: number
  contentType: string
  body: AsyncIterable<Uint8Array> | Uint8Array
}

/** A failure that restarting cannot fix (binary not found, bad config): no restart is scheduled. */
export class PermanentRunnerError extends LlmeshError {
  constructor (message: string, options?: { cause?: unknown }) {
    super('RUNNER_FAILED', message, options)
  }
}

/**
 * The state machine, supervision and stall detection shared by every adapter. An adapter
 * implements `launch` (bring it up, resolve when it serves), `shutdown` (idempotent), `check`
 * (one health probe) and `open` (one upstream request); this class does the rest:
 *
 * - states: stopped -> starting (-> loading) -> ready; any -> failed -> starting ...
 * - a failure while started (`fail`: process exit, failed health checks, repeated stalls, a
 *   failed launch) sets 'failed', shuts the runner down and restarts it after an exponential
 *   backoff with jitter, capped; being ready for RESTART_RESET_AFTER_MS resets the backoff;
 *   `crashLoopFailures` failures in a row end the restarts: 'failed' for good, with the reason
 *   in lastError and the adapter's last stderr lines in `describe().stderrTail`, until `start()`;
 * - while 'loading', an adapter that can tell reports the share of the weights loaded
 *   (`setProgress`), published in steps of LOAD_PROGRESS_STEP;
 * - `infer` passes one request upstream and wraps the response body with stall detection. It
 *   counts nothing: a runner stays 'ready' however many requests it has, admission (the agent's)
 *   is the one count of busy and queued requests.
 */
export abstract class BaseRunner implements Runner {
  readonly id: string
  abstract readonly kind: RunnerInfo['kind']
  abstract readonly model: string
  protected readonly log: Logger
  protected readonly common: RunnerCommonInit
  private _state: RunnerState = 'stopped'
  private readonly listeners = new Set<RunnerStateListener>()
  private wanted = false
  private generation = 0
  private firstStart?: Promise<void>
  private restartTimer?: NodeJS.Timeout
  private healthTimer?: NodeJS.Timeout
  private healthRunning = false
  private healthFails = 0
  private attempt = 0
  private readyAt = 0
  private _restarts = 0
  private _lastError?: string
  /** share of the weights loaded, while 'loading' and the adapter reports it */
  private _progress?: number
  /** failed and not restarting (crash loop, permanent failure, restarts off) */
  private _gaveUp = false
  /** the adapter's stderr tail at the last failure */
  private _stderrTail?: string
  /** consecutive stalls, reset by a stream that completes */
  private _stalls = 0

  constructor (common: RunnerCommonInit) {
    this.common = common
    this.id = common.id
    this.log = common.logger.child({ component: 'runner', runner: common.id })
  }

  get state (): RunnerState { return this._state }
  get slots (): number { return this.common.slots ?? DEFAULT_SLOTS }
  get restarts (): number { return this._restarts }
  get lastError (): string | undefined { return this._lastError }

  /** Bring the runner up: 'starting' (maybe 'loading') then 'ready'. */
  protected abstract launch (): Promise<void>
  /** Release everything `launch` acquired (kill the process, dispose the model). Idempotent. */
  protected abstract shutdown (): Promise<void>
  /** One health probe: undefined when healthy, else why not. */
  protected abstract check (timeoutMs: number): Promise<string | undefined>
  /** One upstream request; `signal` aborts it (stall, client gone). */
  protected abstract open (path: RunnerPath, body: Record<string, unknown>, signal: Signal): Promise<UpstreamResponse>
  /** Slots busy according to the runner itself, when it can tell. */
  protected async runnerBusy (): Promise<number | undefined> { return undefined }
  /** Local details for `describe()`. */
  protected details (): Partial<RunnerDescription> { return {} }
  /** Extra published fields for `info()`. */
  protected extraInfo (): Partial<RunnerInfo> { return {} }
  /** Why a request was lost, beyond the socket error (e.g. "llama-server exited: signal SIGKILL"). */
  protected crashContext (): string | undefined { return undefined }
  /** The runner process's last stderr lines, where there is a process (bounded: STDERR_TAIL_*). */
  protected stderrTail (): string | undefined { return undefined }

  info (): RunnerInfo {
    const info: RunnerInfo = { id: this.id, kind: this.kind, model: this.model, state: this._state, slots: this.slots, ...this.extraInfo() }
    if (this._restarts > 0) info.restarts = this._restarts
    if (this._lastError != null) info.lastError = this._lastError.slice(0, 512)
    if (this._state === 'loading' && this._progress != null) info.progress = this._progress
    return info
  }

  describe (): RunnerDescription {
    const d: RunnerDescription = { ...this.info(), stalls: this._stalls, ...this.details() }
    if (this._state === 'failed') {
      if (this._gaveUp) d.gaveUp = true
      if (this._stderrTail != null && this._stderrTail !== '') d.stderrTail = this._stderrTail
    }
    return d
  }

  onState (fn: RunnerStateListener): () => void {
    this.listeners.add(fn)
    return () => { this.listeners.delete(fn) }
  }

  protected setState (state: RunnerState): void {
    if (state === this._state) return
    this.log.info({ from: this._state, to: state }, 'runner state')
    this._state = state
    if (state !== 'loading') this._progress = undefined
    this.notify()
  }

  /**
   * The share of the weights loaded, 0..1, while starting or loading (it moves 'starting' to
   * 'loading'). Listeners hear of it when it has grown by LOAD_PROGRESS_STEP since they last did,
   * or reached 1: a load makes a bounded number of updates, however often the engine reports.
   */
  protected setProgress (fraction: number): void {
    if (this._state !== 'starting' && this._state !== 'loading') return
    const p = Math.min(1, Math.max(0, fraction))
    const last = this._progress
    if (last != null && p < last + LOAD_PROGRESS_STEP && !(p >= 1 && last < 1)) return
    this._progress = p
    if (this._state === 'starting') this.setState('loading')
    else this.notify()
  }

  private notify (): void {
    const state = this._state
    const info = this.info()
    for (const fn of this.listeners) {
      try {
        fn(state, info)
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'runner state listener threw')
      }
    }
  }

  /** True while this launch is still the current one (not stopped, not superseded). */
  protected isCurrent (generation: number): boolean {
    return this.wanted && generation === this.generation
  }

  protected get currentGeneration (): number { return this.generation }

  /**
   * Starts the runner and resolves when it is ready. Rejects when the first launch fails; the
   * runner then keeps restarting with backoff until `stop()` (unless the failure is permanent).
   */
  async start (): Promise<void> {
    if (this.wanted && this.firstStart != null && !this._gaveUp) return await this.firstStart
    clearTimeout(this.restartTimer)
    this.wanted = true
    this._gaveUp = false
    this.attempt = 0
    this.firstStart = this.bringUp()
    return await this.firstStart
  }

  private async bringUp (): Promise<void> {
    const gen = ++this.generation
    this.healthFails = 0
    this.setState('starting')
    try {
      await this.launch()
    } catch (err) {
      if (!this.isCurrent(gen)) throw new LlmeshError('RUNNER_FAILED', `runner ${this.id} was stopped while starting`, { cause: err })
      this.fail(`start failed: ${(err as Error).message}`, err instanceof PermanentRunnerError)
      throw err
    }
    if (!this.isCurrent(gen)) return
    this.readyAt = Date.now()
    this._stalls = 0
    this.setState('ready')
    this.scheduleHealth(gen)
  }

  /**
   * Marks the runner failed, shuts it down and, unless stopped, `permanent` or crash-looping
   * (the crashLoopFailures-th failure in a row), restarts it after a backoff. A runner already
   * failed ignores further reports of the same failure.
   */
  protected fail (reason: string, permanent = false): void {
    if (!this.wanted || this._state === 'failed' || this._state === 'stopped') return
    clearTimeout(this.healthTimer)
    if (this.readyAt > 0 && Date.now() - this.readyAt >= RESTART_RESET_AFTER_MS) this.attempt = 0
    this.readyAt = 0
    const limit = this.common.crashLoopFailures ?? DEFAULT_CRASH_LOOP_FAILURES
    const crashLoop = !permanent && this.common.restart !== false && this.attempt + 1 >= limit
    this._lastError = crashLoop ? `gave up after ${this.attempt + 1} failures in a row: ${reason.split('\n')[0]}` : reason.split('\n')[0]
    this._gaveUp = permanent || crashLoop || this.common.restart === false
    this._stderrTail = this.stderrTail()
    this.log.error({ reason, permanent, crashLoop }, 'runner failed')
    const gen = this.generation
    const backoff = this.common.restart
    this.setState('failed')
    void (async () => {
      await this.shutdown().catch((err: unknown) => { this.log.warn({ err: (err as Error).message }, 'shutdown after failure') })
      if (this._gaveUp || backoff === false || !this.isCurrent(gen)) return
      const delay = restartDelay(this.attempt++, backoff ?? {}, this.common.random)
      this.log.info({ delayMs: delay, attempt: this.attempt }, 'restarting runner')
      this.restartTimer = setTimeout(() => {
        if (!this.isCurrent(gen)) return
        this._restarts++
        this.bringUp().catch(() => { /* fail() already recorded it and scheduled the next try */ })
      }, delay)
      this.restartTimer.unref()
    })()
  }

  async stop (): Promise<void> {
    this.wanted = false
    this._gaveUp = false
    this.generation++
    this.firstStart = undefined
    clearTimeout(this.restartTimer)
    clearTimeout(this.healthTimer)
    this.setState('stopped')
    await this.shutdown()
  }

  private scheduleHealth (gen: number): void {
    const interval = this.common.healthIntervalMs ?? DEFAULT_HEALTH_INTERVAL_MS
    clearTimeout(this.healthTimer)
    this.healthTimer = setTimeout(() => {
      void this.healthTick(gen).finally(() => {
        if (this.isCurrent(gen) && this._state === 'ready') this.scheduleHealth(gen)
      })
    }, interval)
    this.healthTimer.unref()
  }

  private async healthTick (gen: number): Promise<void> {
    if (this.healthRunning) return
    this.healthRunning = true
    try {
      const why = await this.check(this.common.healthTimeoutMs ?? DEFAULT_HEALTH_TIMEOUT_MS).catch((err: unknown) => (err as Error).message)
      if (!this.isCurrent(gen) || this._state !== 'ready') return
      if (why == null) {
        this.healthFails = 0
        return
      }
      this.healthFails++
      const limit = this.common.healthFailures ?? DEFAULT_HEALTH_FAILURES
      this.log.warn({ why, fails: this.healthFails, limit }, 'health check failed')
      if (this.healthFails >= limit) this.fail(`health check failed ${this.healthFails} times: ${why}`)
    } finally {
      this.healthRunning = false
    }
  }

  async health (): Promise<RunnerHealth> {
    if (this._state !== 'ready') {
      return { ok: false, state: this._state, ...(this._lastError != null ? { detail: this._lastError } : {}) }
    }
    const why = await this.check(this.common.healthTimeoutMs ?? DEFAULT_HEALTH_TIMEOUT_MS).catch((err: unknown) => (err as Error).message)
    return why == null ? { ok: true, state: this._state } : { ok: false, state: this._state, detail: why }
  }

  async capacity (): Promise<RunnerCapacity> {
    const busy = await this.runnerBusy().catch(() => undefined)
    return { slots: this.slots, ...(busy != null ? { busy } : {}) }
  }

  private noteStall (): void {
    this._stalls++
    const limit = this.common.stallsBeforeUnhealthy ?? DEFAULT_STALLS_BEFORE_UNHEALTHY
    this.log.warn({ stalls: this._stalls, limit }, 'stream stalled')
    if (this._stalls >= limit) this.fail(`stalled ${this._stalls} times in a row`)
  }

  /** Turns an upstream failure into the error a client sees. */
  private lostRequest (err: unknown, signal: Signal): unknown {
    if (err instanceof LlmeshError) return err
    if (signal.aborted && signal.reason instanceof LlmeshError) return signal.reason
    const context = this.crashContext()
    const message = (err as Error)?.message ?? String(err)
    return new LlmeshError('RUNNER_FAILED', `runner ${this.id} (${this.kind}) lost the request: ${message}${context != null ? ` (${context})` : ''}`, { cause: err })
  }

  /**
   * Sends one request to the runner. Only a 'ready' runner takes requests (more than its slots
   * are queued by the runner, not refused); others answer NO_CAPACITY. Iterate the returned body
   * to its end or break out of the loop: that ends the upstream request.
   */
  async infer (path: RunnerPath, body: Record<string, unknown>, signal?: Signal): Promise<RunnerResponse> {
    if (this._state !== 'ready') {
      throw new LlmeshError('NO_CAPACITY', `runner ${this.id} is ${this._state}${this._lastError != null ? ` (last error: ${this._lastError})` : ''}`)
    }
    const streaming = body['stream'] === true
    const firstMs = streaming ? (this.common.firstTokenTimeoutMs ?? DEFAULT_FIRST_TOKEN_TIMEOUT_MS) : (this.common.nonStreamTimeoutMs ?? DEFAULT_NON_STREAM_TIMEOUT_MS)
    const gapMs = streaming ? (this.common.stallTimeoutMs ?? DEFAULT_STALL_TIMEOUT_MS) : firstMs
    const ac = new Abort()
    const onCallerAbort = (): void => { ac.abort(signal?.reason) }
    if (signal?.aborted === true) throw signal.reason
    signal?.addEventListener('abort', onCallerAbort, { once: true })
    const release = (): void => { signal?.removeEventListener('abort', onCallerAbort) }

    let headStalled = false
    const headTimer = setTimeout(() => {
      headStalled = true
      ac.abort(new LlmeshError('STALLED', `${this.describeLabel()} sent no ${streaming ? '' : 'complete '}response for ${firstMs} ms; the request was aborted`))
    }, firstMs)
    let res: UpstreamResponse
    try {
      res = await this.open(path, body, ac.signal)
    } catch (err) {
      release()
      if (headStalled) this.noteStall()
      throw this.lostRequest(err, ac.signal)
    } finally {
      clearTimeout(headTimer)
    }
    if (res.body instanceof Uint8Array) {
      this._stalls = 0
      return { status: res.status, contentType: res.contentType, body: settledBody(res.body, release) }
    }
    const watched = watchStalls(res.body, {
      firstChunkMs: firstMs,
      gapMs,
      label: this.describeLabel(),
      abort: (reason) => { ac.abort(reason) },
      onStall: () => { this.noteStall() },
      onComplete: () => { this._stalls = 0 },
      onSettled: release,
      mapError: (err) => this.lostRequest(err, ac.signal)
    })
    return { status: res.status, contentType: res.contentType, body: watched }
  }

  private describeLabel (): string {
    return `runner ${this.id} (${this.kind}, model ${this.model})`
  }
}

/**
 * Sends one OpenAI request to an HTTP runner (llama-server, mlx_lm.server) and hands back its
 * response; a token stream paced (see requestPaced). No undici time limits: the stall watch
 * owns them (first token, gaps).
 */
export async function postToRunner (pool: Pool, path: string, body: Record<string, unknown>, signal: Signal): Promise<UpstreamResponse> {
  if (body['stream'] === true) return await requestPaced(pool, { path, body: JSON.stringify(body), signal })
  return await requestWhole(pool, { path, body: JSON.stringify(body), signal })
}

/**
 * A body already read whole, as the one-chunk stream a runner response is: `done` runs once
 * when it has been read or the reader stopped (the caller's abort listener is removed then).
 */
function settledBody (bytes: Uint8Array, done: () => void): AsyncIterableIterator<Uint8Array> {
  let sent = false
  let settled = false
  const settle = (): void => {
    if (settled) return
    settled = true
    done()
  }
  return {
    [Symbol.asyncIterator] () { return this },
    async next (): Promise<IteratorResult<Uint8Array>> {
      if (!sent) {
        sent = true
        return { done: false, value: bytes }
      }
      settle()
      return { done: true, value: undefined }
    },
    async return (): Promise<IteratorResult<Uint8Array>> {
      sent = true
      settle()
      return { done: true, value: undefined }
    }
  }
}
