import type { InferPath, RunnerInfo, RunnerState, Signal } from '@llmesh/protocol'

/**
 * Runner API paths the agent forwards to: the OpenAI paths of the infer protocol. llama-server
 * and MLX pass any of them through; the embedded and Ollama runners serve chat and answer
 * INVALID_REQUEST for the others.
 */
export type RunnerPath = InferPath

export interface RunnerResponse {
  status: number
  contentType: string
  /**
   * The runner's bytes as they arrive (SSE when streaming). Iterating it may throw an
   * LlmeshError: STALLED (no token for the stall timeout) or RUNNER_FAILED (the runner died
   * mid-stream). Breaking out of the loop aborts the upstream request.
   */
  body: AsyncIterable<Uint8Array>
}

/** Result of one health check. */
export interface RunnerHealth {
  ok: boolean
  state: RunnerState
  /** why not ok, one line */
  detail?: string
}

/**
 * A runner's slots as the runner itself reports them (tests, logs, `llmesh status`). Not
 * admission: which requests get a slot, and how many are busy or queued, is decided and counted
 * once, by the agent's LocalServing (the scheduler's Admission per runner). A runner keeps no
 * count of its own: a second count would drift from admission's and be trusted by nobody.
 */
export interface RunnerCapacity {
  /** parallel slots the runner has */
  slots: number
  /**
   * slots processing a request now, in the runner's own words (llama-server's `/slots`, the
   * embedded runner's sequences); absent where the runner cannot tell (Ollama, mlx_lm.server,
   * rpc-server, or llama-server started without `/slots`)
   */
  busy?: number
}

/** Local detail of a runner: for the admin API and logs, never published (it holds ports, pids). */
export interface RunnerDescription extends RunnerInfo {
  /** loopback URL of an HTTP runner, or host:port of an rpc-server */
  address?: string
  port?: number
  pid?: number
  stalls: number
  /**
   * failed for good: not restarting (crash loop, a failure restarting cannot fix, restarts off)
   * until `start()` again
   */
  gaveUp?: true
  /**
   * while failed: the runner process's last stderr lines (at most STDERR_TAIL_LINES lines and
   * STDERR_TAIL_CHARS characters), e.g. for the agent's placements entry; local, it holds paths
   */
  stderrTail?: string
}

/** Listener of state changes: the new state and the runner's published info. */
export type RunnerStateListener = (state: RunnerState, info: RunnerInfo) => void

/**
 * One local inference server for one model. Adapters: llama-server, rpc-server, embedded
 * llama.cpp (node-llama-cpp), Ollama, mlx_lm.server.
 *
 * Life cycle: `start()` brings it to 'ready' (through 'starting' / 'loading'); while started, a
 * crash (process exit, failed health checks, repeated stalls) sets 'failed' and the runner
 * restarts itself with capped exponential backoff; `stop()` ends it for good ('stopped'). A
 * runner that keeps failing (DEFAULT_CRASH_LOOP_FAILURES failures in a row, none after being
 * ready for RESTART_RESET_AFTER_MS) stops restarting: 'failed' with `describe().gaveUp`. While
 * 'loading', `info().progress` is the share of the weights loaded where the engine tells.
 *
 * A runner is 'ready' for as long as it serves, however many requests it has: it never sets
 * 'busy' (the protocol keeps that state for peers of older versions; readers still accept it).
 * How busy a runner is, is admission's to count (see RunnerCapacity).
 */
export interface Runner {
  readonly id: string
  readonly kind: RunnerInfo['kind']
  readonly model: string
  readonly state: RunnerState
  start (): Promise<void>
  stop (): Promise<void>
  /** checks the runner now (HTTP /health, TCP connect, ...) */
  health (): Promise<RunnerHealth>
  capacity (): Promise<RunnerCapacity>
  /** what goes into the NodeRecord */
  info (): RunnerInfo
  /** local detail (address, pid, counters) */
  describe (): RunnerDescription
  onState (fn: RunnerStateListener): () => void
  infer (path: RunnerPath, body: Record<string, unknown>, signal?: Signal): Promise<RunnerResponse>
}
