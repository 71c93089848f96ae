import { setTimeout as sleep } from 'node:timers/promises'
import { isIP } from 'node:net'
import { LlmeshError, type RunnerInfo } from '@llmesh/protocol'
import { BaseRunner, PermanentRunnerError, type RunnerCommonInit, type UpstreamResponse } from './base-runner.js'
import { DEFAULT_START_TIMEOUT_MS, START_POLL_MS, STDERR_TAIL_LINES, STOP_GRACE_MS } from './constants.js'
import { PortPicker } from './port.js'
import { canConnect, RunnerProcess } from './process.js'
import type { RunnerDescription } from './runner.js'

/** Name an rpc-server runner carries in `model` when no placement names it. */
export const RPC_SERVER_MODEL = 'rpc-server'

export interface RpcServerInit extends Omit<RunnerCommonInit, 'slots'> {
  /** path of `rpc-server` (`ggml-rpc-server` in recent llama.cpp) */
  binary: string
  /**
   * Address to bind: the mesh-private one. rpc-server has no authentication, so wildcard
   * addresses (0.0.0.0, ::) are refused.
   */
  host: string
  /** port to bind; 0 allocates a free one. @default 0 */
  port?: number
  /** `-t`, CPU threads. undefined leaves rpc-server's default */
  threads?: number
  /** `-c`: cache tensors on local disk so a coordinator's reconnect is fast. @default false */
  cache?: boolean
  /** with `cache`: the folder rpc-server caches under (it adds `rpc/`). @default llama.cpp's (~/.cache/llama.cpp) */
  cacheDir?: string
  /** `-d`: devices to expose (comma list), undefined = all */
  devices?: string
  /** the placement this server holds layers for; shown as `model`. @default "rpc-server" */
  model?: string
  /** a server not accepting TCP connections in this time fails the start. @default 300000 ms */
  startTimeoutMs?: number
  /** where an allocated port comes from; share one among the runners of a host. @default a picker of its own */
  ports?: PortPicker
}

/**
 * One `rpc-server` holding layers of a split model for a llama-server coordinator elsewhere.
 * It has no HTTP and no auth: it binds a loopback address the mesh tunnels to, on an allocated
 * port; it is up once it accepts a TCP connection, and live while its process runs (see
 * `check`). It serves no requests itself (`infer` refuses).
 */
export class RpcServerRunner extends BaseRunner {
  readonly kind = 'rpc-server' as const
  readonly model: string
  private readonly init: RpcServerInit
  private proc?: RunnerProcess
  private _port = 0
  private readonly ports: PortPicker

  constructor (init: RpcServerInit) {
    super({ ...init, slots: 0 })
    if (init.host === '' || init.host === '0.0.0.0' || init.host === '::' || isIP(init.host) === 0) {
      throw new LlmeshError('INVALID_REQUEST', `rpc-server host must be one IP address of the mesh-private network, not '${init.host}' (rpc-server has no auth)`)
    }
    this.init = init
    this.model = init.model ?? RPC_SERVER_MODEL
    this.ports = init.ports ?? new PortPicker()
  }

  override get slots (): number { return 0 }
  get port (): number { return this._port }
  get host (): string { return this.init.host }
  /** host:port a coordinator passes to `--rpc` */
  get endpoint (): string { return this.init.host.includes(':') ? `[${this.init.host}]:${this._port}` : `${this.init.host}:${this._port}` }
  get pid (): number | undefined { return this.proc?.alive === true ? this.proc.pid : undefined }

  protected override extraInfo (): Partial<RunnerInfo> {
    return this._port > 0 ? { endpoint: this.endpoint } : {}
  }

  protected override details (): Partial<RunnerDescription> {
    return { address: this.endpoint, port: this._port, ...(this.pid != null ? { pid: this.pid } : {}) }
  }

  protected async launch (): Promise<void> {
    const gen = this.currentGeneration
    this._port = this.init.port != null && this.init.port > 0 ? this.init.port : await this.ports.pick(this.init.host)
    const args = ['-H', this.init.host, '-p', String(this._port)]
    if (this.init.threads != null) args.push('-t', String(this.init.threads))
    if (this.init.cache === true) args.push('-c')
    if (this.init.devices != null) args.push('-d', this.init.devices)
    this.log.info({ binary: this.init.binary, endpoint: this.endpoint }, 'starting rpc-server')
    // stopped while the port was found: spawning now would leave a process nobody stops
    if (!this.isCurrent(gen)) throw new LlmeshError('RUNNER_FAILED', 'rpc-server start was cancelled')
    const proc = new RunnerProcess(this.init.binary, args, this.common.spawn, this.init.cacheDir != null ? { env: { LLAMA_CACHE: this.init.cacheDir } } : {})
    this.proc = proc
    void proc.exited.then(() => {
      if (this.proc !== proc) return
      this.fail(`rpc-server ${proc.describeExit()}`, proc.exit?.error != null)
    })
    try {
      const limit = this.init.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS
      const deadline = Date.now() + limit
      while (Date.now() < deadline && this.isCurrent(gen)) {
        if (!proc.alive) {
          if (proc.exit?.error != null) throw new PermanentRunnerError(`rpc-server ${proc.describeExit()}: is ${this.init.binary} an rpc-server binary?`)
          throw new LlmeshError('RUNNER_FAILED', `rpc-server ${proc.describeExit()}:\n${proc.stderrTail()}`)
        }
        if (await canConnect(this.init.host, this._port, 1000)) return
        await sleep(START_POLL_MS)
      }
      throw new LlmeshError('RUNNER_FAILED', this.isCurrent(gen) ? `rpc-server did not accept connections in ${limit} ms` : 'rpc-server start was cancelled')
    } finally {
      // stopped or superseded while starting: this process is nobody's to stop but ours
      if (!this.isCurrent(gen)) await proc.kill(STOP_GRACE_MS)
    }
  }

  protected async shutdown (): Promise<void> {
    await this.proc?.kill(STOP_GRACE_MS)
    if (this.init.port == null || this.init.port <= 0) this.ports.release(this._port)
  }

  protected override stderrTail (): string | undefined {
    return this.proc?.stderrTail(STDERR_TAIL_LINES)
  }

  /**
   * Live while its process is. Not by a TCP connect once started: rpc-server serves one client
   * at a time and listens with a backlog of 1, so beside a coordinator's connection a probe
   * waits in the queue, times out, and three of them would restart a server that works (its
   * coordinator's stalls are what say it does not).
   */
  protected async check (): Promise<string | undefined> {
    return this.proc?.alive === true ? undefined : `rpc-server ${this.proc?.describeExit() ?? 'not started'}`
  }

  protected async open (): Promise<UpstreamResponse> {
    throw new LlmeshError('INVALID_REQUEST', 'an rpc-server holds layers for a llama-server coordinator; it does not serve requests')
  }

  /** Always refuses: an rpc-server serves tensors to a coordinator, not requests. */
  override async infer (): Promise<never> {
    throw new LlmeshError('INVALID_REQUEST', 'an rpc-server holds layers for a llama-server coordinator; it does not serve requests')
  }
}
