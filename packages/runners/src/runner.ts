import type { RunnerInfo, RunnerState } from '@llmesh/protocol'

/** Runner API paths the agent forwards to. */
export type RunnerPath = '/v1/chat/completions'

export interface RunnerResponse {
  status: number
  contentType: string
  /** the runner's bytes as they arrive (SSE when streaming) */
  body: AsyncIterable<Uint8Array>
}

/** One local inference server for one model. Adapters: llama-server (more to come). */
export interface Runner {
  readonly id: string
  readonly kind: RunnerInfo['kind']
  readonly model: string
  readonly state: RunnerState
  start (): Promise<void>
  stop (): Promise<void>
  info (): RunnerInfo
  onState (fn: (state: RunnerState) => void): () => void
  infer (path: RunnerPath, body: Record<string, unknown>, signal?: AbortSignal): Promise<RunnerResponse>
}
