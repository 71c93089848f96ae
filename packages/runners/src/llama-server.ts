import { setTimeout as sleep } from 'node:timers/promises'
import { Pool } from 'undici'
import { LlmeshError, type Signal } from '@llmesh/protocol'
import { BaseRunner, PermanentRunnerError, postToRunner, type GgufRunnerInit, type UpstreamResponse } from './base-runner.js'
import { DEFAULT_CTX_SIZE, DEFAULT_SLOTS, DEFAULT_START_TIMEOUT_MS, PORT_BIND_ATTEMPTS, START_POLL_MS, STDERR_TAIL_LINES, STOP_GRACE_MS } from './constants.js'
import { LoadDotsParser, parseChildLoadProgress } from './load-progress.js'
import { RUNNER_CONNECT } from './paced.js'
import { PortPicker } from './port.js'
import { RunnerProcess } from './process.js'
import type { RunnerDescription, RunnerPath } from './runner.js'

export { DEFAULT_CTX_SIZE, DEFAULT_SLOTS, DEFAULT_START_TIMEOUT_MS, STOP_GRACE_MS } from './constants.js'

export interface LlamaServerInit extends GgufRunnerInit {
  /** path of the `llama-server` binary */
  binary: string
  /**
   * rpc-servers (host:port) that hold part of the layers: this llama-server is then the
   * coordinator of a split model, started once and reused like any runner.
   */
  rpc?: string[]
  /**
   * with `rpc`: the blocks each rpc-server holds, in `rpc`'s order; the model's other blocks
   * stay on this host's CPU, and so does the output head (planSplit counts it there)
   */
  rpcBlocks?: number[]
  /** further llama-server arguments, appended last */
  extraArgs?: string[]
  /**
   * run llama-server as a router's child where its arguments allow (see ROUTER_PORT_ENV): load
   * progress, and an exit with the agent; `false`: plainly, without either. @default true
   */
  routerChild?: boolean
  /** a model that is not healthy in this time fails the start. @default 300000 ms */
  startTimeoutMs?: number
  /** where ports come from; share one among the runners of a host. @default a picker of its own */
  ports?: PortPicker
}

/** What llama-server writes to stderr when its port is taken (the bind is retried on another). */
const BIND_FAILED = /couldn't bind|address already in use/i

/**
 * llama-server is run as a router's child (env LLAMA_SERVER_ROUTER_PORT set, whatever its value)
 * for what that mode adds: its load progress reported on stdout (builds that install their own
 * progress callback print it nowhere else), and, once ready, an exit when its stdin ends or reads
 * CHILD_EXIT_COMMAND. The runner holds that stdin open for the process's life, so the child
 * dies with the agent even where there is no parent-death signal (macOS, no setpriv); while it
 * loads it does not read stdin yet, and an orphan ends when its load does. The value is '0':
 * the child reads only its presence, and no port is better than one a child could mistake for a
 * router. The mode also skips the model resolution of a plain llama-server (downloads for
 * -hf / -mu / -dr, the draft's speculative type read from its GGUF): a local `-m` needs none,
 * but arguments or LLAMA_ARG_* variables that need it (MODEL_SOURCE_ARG, MODEL_SOURCE_ENV) run
 * it plainly, without progress. LLAMA_SERVER_CHILD_MODE is always unset: 'download' would
 * download and exit instead of serving.
 */
const ROUTER_PORT_ENV = { LLAMA_SERVER_ROUTER_PORT: '0', LLAMA_SERVER_CHILD_MODE: undefined }
/** Asks a ready child to shut down as it does on SIGTERM (which alone leaves it waiting on stdin). */
const CHILD_EXIT_COMMAND = 'cmd_router_to_child:exit'
/** llama-server options that name a model to download or read beyond `-m` (see ROUTER_PORT_ENV). */
const MODEL_SOURCE_ARG = /^(-mu|--model-url|-mmu|--mmproj-url|-hf|-hfr|--hf-repo|-hff|--hf-file|-dr|--docker-repo|-hfd|-hfrd|--hf-repo-draft|--spec-draft-hf|-md|--model-draft|--spec-draft-model|--[a-z0-9.-]+-(default|spec))$/
/** The environment variables of those options. */
const MODEL_SOURCE_ENV = /^LLAMA_ARG_(MODEL_URL|MMPROJ_URL|HF_REPO|HF_FILE|DOCKER_REPO|SPEC_DRAFT_HF_REPO|SPEC_DRAFT_MODEL)$/

/** One `/slots` entry of llama-server. */
interface SlotState { id: number, is_processing: boolean }

/**
 * One `llama-server` process serving one model on an allocated loopback port (never a fixed
 * one: two runners and the agent never clash; a port taken before llama-server binds it is
 * swapped for another at once). Started once and reused for every request of its model; a crash
 * (exit, failed /health) restarts it with backoff on a new port. While it loads, the load
 * progress it reports as a router's child (see ROUTER_PORT_ENV), or prints on stderr (where the
 * build prints it), is the runner's progress.
 */
export class LlamaServerRunner extends BaseRunner {
  readonly kind = 'llama-server' as const
  readonly model: string
  private readonly init: LlamaServerInit
  private proc?: RunnerProcess
  private pool?: Pool
  private _port = 0
  private readonly ports: PortPicker

  constructor (init: LlamaServerInit) {
    super(init)
    this.init = init
    this.model = init.modelName
    this.ports = init.ports ?? new PortPicker()
  }

  get port (): number { return this._port }
  get baseUrl (): string { return `http://127.0.0.1:${this._port}` }
  override get slots (): number { return this.init.slots ?? DEFAULT_SLOTS }
  /** PID of the llama-server process, for tests and `llmesh status`. */
  get pid (): number | undefined { return this.proc?.alive === true ? this.proc.pid : undefined }

  /** The command line of the next launch (without the binary). */
  args (port: number): string[] {
    const args = [
      '-m', this.init.modelPath,
      '--alias', this.init.modelName,
      '--host', '127.0.0.1',
      '--port', String(port),
      '--parallel', String(this.slots),
      '-c', String(this.init.ctxSize ?? DEFAULT_CTX_SIZE),
      '--metrics'
    ]
    if (this.init.gpuLayers != null) args.push('-ngl', String(this.init.gpuLayers))
    if (this.init.threads != null) args.push('-t', String(this.init.threads))
    if (this.init.rpc != null && this.init.rpc.length > 0) {
      args.push('--rpc', this.init.rpc.join(','))
      if (this.init.rpcBlocks != null) args.push(...splitArgs(this.init.rpcBlocks))
    }
    args.push(...(this.init.extraArgs ?? []))
    return args
  }

  /** Whether the next launch runs llama-server as a router's child (see ROUTER_PORT_ENV). */
  get childMode (): boolean {
    return this.init.routerChild !== false &&
      !(this.init.extraArgs ?? []).some((a) => MODEL_SOURCE_ARG.test(a)) &&
      !Object.keys(process.env).some((k) => MODEL_SOURCE_ENV.test(k))
  }

  protected async launch (): Promise<void> {
    const gen = this.currentGeneration
    for (let attempt = 1; ; attempt++) {
      const port = await this.ports.pick()
      // stopped while the port was found: spawning now would leave a process nobody stops
      if (!this.isCurrent(gen)) {
        this.ports.release(port)
        throw new LlmeshError('RUNNER_FAILED', 'llama-server start was cancelled')
      }
      this._port = port
      this.log.info({ binary: this.init.binary, port, slots: this.slots }, 'starting llama-server')
      const progress = (fraction: number): void => { if (this.isCurrent(gen) && this.proc === proc) this.setProgress(fraction) }
      // a coordinator whose rpc-server is gone aborts: without a backtrace (ggml runs gdb for it, seconds)
      const env = this.init.rpc != null && this.init.rpc.length > 0 ? { GGML_NO_BACKTRACE: '1' } : {}
      const io = this.childMode
        ? {
            env: { ...ROUTER_PORT_ENV, ...env },
            stdin: { farewell: CHILD_EXIT_COMMAND },
            // the rest of stdout is log lines, discarded as they are without child mode
            onStdoutLine: (line: string) => {
              const fraction = parseChildLoadProgress(line)
              if (fraction != null) progress(fraction)
            }
          }
        : { env }
      const proc: RunnerProcess = new RunnerProcess(this.init.binary, this.args(port), this.common.spawn, io)
      this.proc = proc
      this.pool = new Pool(this.baseUrl, { connections: this.slots * 2 + 2, pipelining: 1, connect: RUNNER_CONNECT })
      const dots = new LoadDotsParser(progress)
      const onStderr = (buf: Buffer): void => { dots.push(buf.toString('utf8')) }
      proc.child.stderr?.on('data', onStderr)
      const exited = proc.exited.then((exit) => {
        const why = `llama-server ${proc.describeExit()}`
        if (exit.error != null) throw new PermanentRunnerError(`${why}: is ${this.init.binary} a llama-server binary?`, { cause: exit.error })
        throw new LlmeshError('RUNNER_FAILED', `${why} while loading:\n${proc.stderrTail()}`)
      })
      exited.catch(() => {})
      try {
        await Promise.race([this.waitHealthy(gen), exited])
      } catch (err) {
        // the port was taken between its pick and the bind: not the runner's failure, try another
        if (this.isCurrent(gen) && !proc.alive && attempt < PORT_BIND_ATTEMPTS && BIND_FAILED.test(proc.stderrTail())) {
          this.log.warn({ port, attempt }, 'llama-server could not bind its port; picking another')
          const pool = this.pool
          this.pool = undefined
          await pool?.destroy().catch(() => {})
          this.ports.release(port)
          continue
        }
        throw err
      } finally {
        proc.child.stderr?.off('data', onStderr)
        // stopped or superseded while loading: this process is nobody's to stop but ours
        if (!this.isCurrent(gen)) await proc.kill(STOP_GRACE_MS)
      }
      // from ready on, an exit is a crash (before it, the start failed: bringUp reports that)
      void proc.exited.then(() => {
        if (this.proc !== proc) return
        this.fail(`llama-server ${proc.describeExit()}${proc.exit?.error == null ? `:\n${proc.stderrTail()}` : ''}`, proc.exit?.error != null)
      })
      return
    }
  }

  private async waitHealthy (gen: number): Promise<void> {
    const limit = this.init.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS
    const deadline = Date.now() + limit
    while (Date.now() < deadline && this.isCurrent(gen)) {
      const pool = this.pool
      if (pool == null) break
      try {
        const res = await pool.request({ path: '/health', method: 'GET', headersTimeout: 2000, bodyTimeout: 2000 })
        await res.body.dump()
        if (res.statusCode === 200) return
        if (res.statusCode === 503 && this.isCurrent(gen)) this.setState('loading')
      } catch {
        // not listening yet
      }
      await sleep(START_POLL_MS)
    }
    if (!this.isCurrent(gen)) throw new LlmeshError('RUNNER_FAILED', 'llama-server start was cancelled')
    throw new LlmeshError('RUNNER_FAILED', `llama-server did not become healthy in ${limit} ms`)
  }

  protected async shutdown (): Promise<void> {
    const proc = this.proc
    const pool = this.pool
    this.pool = undefined
    await proc?.kill(STOP_GRACE_MS)
    await pool?.destroy().catch(() => {})
    if (this._port > 0 && proc != null && !proc.alive) this.ports.release(this._port)
  }

  protected override stderrTail (): string | undefined {
    return this.proc?.stderrTail(STDERR_TAIL_LINES)
  }

  protected async check (timeoutMs: number): Promise<string | undefined> {
    if (this.proc?.alive !== true) return `llama-server ${this.proc?.describeExit() ?? 'not started'}`
    const pool = this.pool
    if (pool == null) return 'not started'
    const res = await pool.request({ path: '/health', method: 'GET', headersTimeout: timeoutMs, bodyTimeout: timeoutMs, signal: AbortSignal.timeout(timeoutMs) })
    await res.body.dump()
    return res.statusCode === 200 ? undefined : `/health answered ${res.statusCode}`
  }

  protected override crashContext (): string | undefined {
    const proc = this.proc
    if (proc == null) return undefined
    return proc.alive ? undefined : `llama-server ${proc.describeExit()}`
  }

  protected override details (): Partial<RunnerDescription> {
    return { address: this.baseUrl, port: this._port, ...(this.pid != null ? { pid: this.pid } : {}) }
  }

  protected async open (path: RunnerPath, body: Record<string, unknown>, signal: Signal): Promise<UpstreamResponse> {
    const pool = this.pool
    if (pool == null) throw new LlmeshError('NO_CAPACITY', `runner ${this.id} is ${this.state}`)
    return await postToRunner(pool, path, { ...body, model: this.model }, signal)
  }

  private async getJson<T> (path: string, timeoutMs = 5000): Promise<{ status: number, json: T | undefined }> {
    const pool = this.pool
    if (pool == null) throw new LlmeshError('NO_CAPACITY', `runner ${this.id} is ${this.state}`)
    const res = await pool.request({ path, method: 'GET', headersTimeout: timeoutMs, bodyTimeout: timeoutMs })
    const text = await res.body.text()
    let json: T | undefined
    try { json = JSON.parse(text) as T } catch { json = undefined }
    return { status: res.statusCode, json }
  }

  /** Slots busy now, from llama-server's `/slots`; undefined when /slots is off or not answering. */
  protected override async runnerBusy (): Promise<number | undefined> {
    const { status, json } = await this.getJson<SlotState[]>('/slots')
    if (status !== 200 || !Array.isArray(json)) return undefined
    return json.filter((s) => s.is_processing).length
  }

  /**
   * llama-server's Prometheus counters (`--metrics`), e.g. `llamacpp:prompt_tokens_total`,
   * `llamacpp:tokens_predicted_total`, `llamacpp:requests_processing`.
   */
  async metrics (): Promise<Record<string, number>> {
    const pool = this.pool
    if (pool == null) throw new LlmeshError('NO_CAPACITY', `runner ${this.id} is ${this.state}`)
    const res = await pool.request({ path: '/metrics', method: 'GET', headersTimeout: 5000, bodyTimeout: 5000 })
    const text = await res.body.text()
    if (res.statusCode !== 200) throw new LlmeshError('RUNNER_FAILED', `/metrics answered ${res.statusCode}`)
    return parsePrometheus(text)
  }
}

/** Parses Prometheus text exposition: `name{labels} value` lines; comments skipped. */
export function parsePrometheus (text: string): Record<string, number> {
  const out: Record<string, number> = {}
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line.trim() === '') continue
    const m = /^([^\s{]+(?:\{[^}]*\})?)\s+(\S+)/.exec(line)
    if (m?.[1] == null || m[2] == null) continue
    const value = Number(m[2])
    if (!Number.isNaN(value)) out[m[1]] = value
  }
  return out
}

/**
 * llama-server flags that put `blocks[i]` blocks on the i-th rpc-server and the rest on this
 * host's CPU (llama.cpp at de3ff815, read from its log): `-ngl` counts the model's blocks and
 * its output as one more unit, and offloads the LAST ones, over the devices in `--rpc` order
 * by `--tensor-split`; so the last share takes one more for the output, which `-ot` then keeps
 * on the CPU (as planned). `-fit off`: with the split given, fitting changes nothing but makes a
 * dry load with extra RPC connections.
 */
export function splitArgs (blocks: readonly number[]): string[] {
  const shares = blocks.map((b, i) => i === blocks.length - 1 ? b + 1 : b)
  const offloaded = blocks.reduce((n, b) => n + b, 0) + 1
  return ['-ngl', String(offloaded), '--tensor-split', shares.join(','), '-ot', '^output\\.weight=CPU', '-fit', 'off']
}
