import { spawn, type ChildProcess } from 'node:child_process'
import { setTimeout as sleep } from 'node:timers/promises'
import { Pool } from 'undici'
import type { Logger } from 'pino'
import { LlmeshError, type RunnerInfo, type RunnerState } from '@llmesh/protocol'
import { freePort } from './port.js'
import type { Runner, RunnerPath, RunnerResponse } from './runner.js'

/** Parallel slots (`--parallel`): requests one runner serves at once. @default 2 */
export const DEFAULT_SLOTS = 2
/** Total context (`-c`), shared by the slots. @default 4096 tokens */
export const DEFAULT_CTX_SIZE = 4096
/** Loading a model that does not answer /health with 200 in this time fails the start. @default 300000 ms */
export const DEFAULT_START_TIMEOUT_MS = 300_000
/** A stopping runner that has not exited after SIGTERM gets SIGKILL after this. @default 5000 ms */
export const STOP_GRACE_MS = 5000
/** Poll interval of /health while the model loads. @default 100 ms */
const HEALTH_POLL_MS = 100

export interface LlamaServerInit {
  id: string
  /** path of the `llama-server` binary */
  binary: string
  modelPath: string
  /** name the mesh knows the model by; passed as `--alias` so responses carry it */
  modelName: string
  slots?: number
  ctxSize?: number
  /** `-ngl`; undefined leaves llama-server's default */
  gpuLayers?: number
  startTimeoutMs?: number
  logger: Logger
}

/**
 * One `llama-server` process serving one model on an allocated loopback port. Started once and
 * reused for every request of its model.
 */
export class LlamaServerRunner implements Runner {
  readonly id: string
  readonly kind = 'llama-server' as const
  readonly model: string
  private readonly init: LlamaServerInit
  private readonly log: Logger
  private child?: ChildProcess
  private pool?: Pool
  private _port = 0
  private _state: RunnerState = 'stopped'
  private readonly stateListeners = new Set<(state: RunnerState) => void>()
  private readonly stderrTail: string[] = []

  constructor (init: LlamaServerInit) {
    this.init = init
    this.id = init.id
    this.model = init.modelName
    this.log = init.logger.child({ component: 'runner', runner: init.id })
  }

  get state (): RunnerState { return this._state }
  get port (): number { return this._port }
  get baseUrl (): string { return `http://127.0.0.1:${this._port}` }
  get slots (): number { return this.init.slots ?? DEFAULT_SLOTS }

  info (): RunnerInfo {
    return { id: this.id, kind: this.kind, model: this.model, state: this._state, slots: this.slots }
  }

  onState (fn: (state: RunnerState) => void): () => void {
    this.stateListeners.add(fn)
    return () => this.stateListeners.delete(fn)
  }

  private setState (state: RunnerState): void {
    if (state === this._state) return
    this.log.info({ from: this._state, to: state }, 'runner state')
    this._state = state
    for (const fn of this.stateListeners) fn(state)
  }

  async start (): Promise<void> {
    if (this.child != null) return
    this.setState('starting')
    this._port = await freePort()
    const args = [
      '-m', this.init.modelPath,
      '--alias', this.init.modelName,
      '--host', '127.0.0.1',
      '--port', String(this._port),
      '--parallel', String(this.slots),
      '-c', String(this.init.ctxSize ?? DEFAULT_CTX_SIZE),
      '--metrics'
    ]
    if (this.init.gpuLayers != null) args.push('-ngl', String(this.init.gpuLayers))
    this.log.info({ binary: this.init.binary, port: this._port, slots: this.slots }, 'starting llama-server')
    const child = spawn(this.init.binary, args, { stdio: ['ignore', 'ignore', 'pipe'] })
    this.child = child
    child.stderr?.on('data', (buf: Buffer) => {
      for (const line of buf.toString('utf8').split('\n')) {
        if (line.trim() === '') continue
        this.stderrTail.push(line)
        if (this.stderrTail.length > 30) this.stderrTail.shift()
      }
    })
    const exited = new Promise<never>((_resolve, reject) => {
      const fail = (why: string): void => {
        reject(new LlmeshError('RUNNER_FAILED', `llama-server ${why}:\n${this.stderrTail.slice(-10).join('\n')}`))
      }
      child.once('error', (err) => { fail(`could not start (${err.message})`) })
      child.once('exit', (code, signal) => { fail(`exited (code ${code}, signal ${signal})`) })
    })
    exited.catch(() => {}) // observed below and by the exit handler
    child.once('exit', (code, signal) => {
      this.child = undefined
      void this.pool?.close()
      this.pool = undefined
      if (this._state !== 'stopped') {
        this.log.error({ code, signal }, 'llama-server exited')
        this.setState('failed')
      }
    })
    this.pool = new Pool(this.baseUrl, { connections: this.slots * 2, pipelining: 1 })
    await Promise.race([this.waitHealthy(), exited])
    this.setState('ready')
  }

  private async waitHealthy (): Promise<void> {
    const deadline = Date.now() + (this.init.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS)
    while (Date.now() < deadline) {
      if (this.child == null) throw new LlmeshError('RUNNER_FAILED', 'llama-server exited while loading')
      try {
        const res = await this.pool!.request({ path: '/health', method: 'GET', headersTimeout: 2000, bodyTimeout: 2000 })
        await res.body.dump()
        if (res.statusCode === 200) return
        if (res.statusCode === 503) this.setState('loading')
      } catch {
        // not listening yet
      }
      await sleep(HEALTH_POLL_MS)
    }
    await this.stop()
    throw new LlmeshError('RUNNER_FAILED', `llama-server did not become healthy in ${this.init.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS} ms`)
  }

  async infer (path: RunnerPath, body: Record<string, unknown>, signal?: AbortSignal): Promise<RunnerResponse> {
    const pool = this.pool
    if (pool == null || this._state !== 'ready') throw new LlmeshError('NO_CAPACITY', `runner ${this.id} is ${this._state}`)
    let res
    try {
      res = await pool.request({
        path,
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ ...body, model: this.model }),
        signal,
        // a model may think for a while before its first token; stall detection comes later
        headersTimeout: 0,
        bodyTimeout: 0
      })
    } catch (err) {
      throw new LlmeshError('RUNNER_FAILED', `llama-server request failed: ${(err as Error).message}`, { cause: err })
    }
    const contentType = String(res.headers['content-type'] ?? 'application/json')
    return { status: res.statusCode, contentType, body: res.body }
  }

  async stop (): Promise<void> {
    this.setState('stopped')
    const child = this.child
    if (child == null) return
    const gone = new Promise<void>((resolve) => child.once('exit', () => { resolve() }))
    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS)
    await gone
    clearTimeout(timer)
    await this.pool?.close()
    this.pool = undefined
  }

  /** PID of the llama-server process, for tests and `llmesh status`. */
  get pid (): number | undefined {
    return this.child?.pid
  }
}
