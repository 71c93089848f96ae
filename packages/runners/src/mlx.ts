/**
 * Adopts an `mlx_lm.server` (Apple silicon only) already running on the host. It speaks
 * OpenAI (`/v1/chat/completions`, `/v1/models`), so requests pass through unchanged except for
 * `model`. Its `/health` answers 200 whenever the process is up, even before a model works, so
 * health here means only "the server answers"; readiness also requires `/v1/models` to answer.
 *
 * UNTESTED AGAINST A REAL mlx_lm.server: MLX cannot run on these machines. The tests replay a
 * recorded exchange (reconstructed from mlx_lm/server.py's response code) on a local server.
 */
import { Pool } from 'undici'
import { LlmeshError, type Signal } from '@llmesh/protocol'
import { BaseRunner, type RunnerCommonInit, type UpstreamResponse, postToRunner } from './base-runner.js'
import { DEFAULT_MLX_SLOTS } from './constants.js'
import { RUNNER_CONNECT } from './paced.js'
import type { RunnerDescription, RunnerPath } from './runner.js'

/**
 * The model name mlx_lm.server maps to the model it was started with (`--model`): a request
 * naming it never makes the server load another model. @default "default_model"
 */
export const MLX_DEFAULT_MODEL = 'default_model'

export interface MlxInit extends RunnerCommonInit {
  /** base URL of mlx_lm.server, e.g. http://127.0.0.1:8080 */
  url: string
  /** name in the mesh */
  modelName: string
  /** `model` sent to mlx_lm.server. @default "default_model" (the one it was started with) */
  upstreamModel?: string
  /** requests sent at once. @default 1 */
  slots?: number
}

export class MlxRunner extends BaseRunner {
  readonly kind = 'mlx' as const
  readonly model: string
  private readonly init: MlxInit
  private readonly url: string
  private pool?: Pool

  constructor (init: MlxInit) {
    super(init)
    this.init = init
    this.model = init.modelName
    this.url = init.url.replace(/\/+$/, '')
  }

  override get slots (): number { return this.init.slots ?? DEFAULT_MLX_SLOTS }

  protected async launch (): Promise<void> {
    this.pool ??= new Pool(this.url, { connections: this.slots * 2 + 2, pipelining: 1, connect: RUNNER_CONNECT })
    const why = await this.check(5000)
    if (why != null) throw new LlmeshError('RUNNER_FAILED', why)
    const res = await this.pool.request({ path: '/v1/models', method: 'GET', headersTimeout: 5000, bodyTimeout: 5000 })
    const text = await res.body.text()
    if (res.statusCode !== 200) throw new LlmeshError('RUNNER_FAILED', `mlx_lm.server /v1/models answered ${res.statusCode}`)
    JSON.parse(text)
  }

  protected async shutdown (): Promise<void> {
    const pool = this.pool
    this.pool = undefined
    await pool?.close().catch(() => {})
  }

  protected async check (timeoutMs: number): Promise<string | undefined> {
    const pool = this.pool
    if (pool == null) return 'not started'
    const res = await pool.request({ path: '/health', method: 'GET', headersTimeout: timeoutMs, bodyTimeout: timeoutMs, signal: AbortSignal.timeout(timeoutMs) })
    await res.body.dump()
    return res.statusCode === 200 ? undefined : `mlx_lm.server /health answered ${res.statusCode}`
  }

  protected override details (): Partial<RunnerDescription> {
    return { address: this.url }
  }

  protected async open (path: RunnerPath, body: Record<string, unknown>, signal: Signal): Promise<UpstreamResponse> {
    const pool = this.pool
    if (pool == null) throw new LlmeshError('NO_CAPACITY', `runner ${this.id} is ${this.state}`)
    return await postToRunner(pool, path, { ...body, model: this.init.upstreamModel ?? MLX_DEFAULT_MODEL }, signal)
  }
}
