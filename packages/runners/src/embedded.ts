/**
 * Embedded llama.cpp through `node-llama-cpp`: the zero-setup runner used when no llama-server
 * binary is configured. It runs in the agent's process on node-llama-cpp's prebuilt binaries
 * (`@node-llama-cpp/<platform>` npm packages) and never downloads or compiles anything
 * (`build: 'never'`, `skipDownload`). It answers `/v1/chat/completions` in OpenAI's shapes.
 *
 * Limits: a native crash takes the agent down with it (no process to restart), and a hung
 * native call cannot be killed, only abandoned (stall detection still frees the client).
 */
import type { Llama, LlamaChat, LlamaContext, LlamaModel, ChatHistoryItem } from 'node-llama-cpp'
import { LlmeshError, type Signal } from '@llmesh/protocol'
import { BaseRunner, PermanentRunnerError, type GgufRunnerInit, type UpstreamResponse } from './base-runner.js'
import { DEFAULT_CTX_SIZE, DEFAULT_SLOTS } from './constants.js'
import {
  ChatCompletionWriter,
  ChunkQueue,
  chatMessages,
  includeUsage,
  maxTokens,
  numberField,
  openAiErrorBody,
  stopList,
  type FinishReason,
  type Usage
} from './openai.js'
import type { RunnerDescription, RunnerPath } from './runner.js'

export interface EmbeddedLlamaOptions {
  /** `false` = CPU only; 'auto' lets node-llama-cpp pick CUDA / Vulkan / Metal binaries. @default 'auto' */
  gpu?: 'auto' | false
}

/**
 * Loads node-llama-cpp's native binding once, from its prebuilt binaries only. Load the module
 * lazily: agents that use llama-server never pay for it.
 */
export async function loadLlama (opts: EmbeddedLlamaOptions = {}): Promise<Llama> {
  const { getLlama } = await import('node-llama-cpp')
  try {
    return await getLlama({
      gpu: opts.gpu ?? 'auto',
      build: 'never',
      skipDownload: true,
      usePrebuiltBinaries: true,
      progressLogs: false,
      logLevel: 'error' as never
    })
  } catch (err) {
    throw new PermanentRunnerError(`node-llama-cpp has no usable prebuilt binary for ${process.platform}-${process.arch}: ${(err as Error).message}`, { cause: err })
  }
}

export interface EmbeddedInit extends GgufRunnerInit {
  /** shared Llama instance (one per process is best); without it the runner loads its own */
  llama?: () => Promise<Llama>
  gpu?: 'auto' | false
}

interface Slot {
  chat: LlamaChat
  busy: boolean
}

/** One model loaded in-process by node-llama-cpp, with `slots` sequences serving in parallel. */
export class EmbeddedRunner extends BaseRunner {
  readonly kind = 'embedded' as const
  readonly model: string
  private readonly init: EmbeddedInit
  private llama?: Llama
  private ownLlama = false
  private llamaModel?: LlamaModel
  private context?: LlamaContext
  private pool: Slot[] = []
  private readonly waiting: Array<(slot: Slot | undefined) => void> = []

  constructor (init: EmbeddedInit) {
    super(init)
    this.init = init
    this.model = init.modelName
  }

  override get slots (): number { return this.init.slots ?? DEFAULT_SLOTS }

  protected async launch (): Promise<void> {
    const gen = this.currentGeneration
    this.setState('loading')
    if (this.init.llama != null) {
      this.llama = await this.init.llama()
    } else {
      this.llama = await loadLlama({ gpu: this.init.gpu ?? 'auto' })
      this.ownLlama = true
    }
    const model = await this.llama.loadModel({
      modelPath: this.init.modelPath,
      ...(this.init.gpuLayers != null ? { gpuLayers: this.init.gpuLayers } : {}),
      onLoadProgress: (fraction: number) => { if (this.isCurrent(gen)) this.setProgress(fraction) }
    })
    this.llamaModel = model
    // node-llama-cpp sizes context per sequence; llama-server's -c is the total: match the latter
    const perSlot = Math.max(256, Math.floor((this.init.ctxSize ?? DEFAULT_CTX_SIZE) / this.slots))
    const context = await model.createContext({
      sequences: this.slots,
      contextSize: perSlot,
      ...(this.init.threads != null ? { threads: this.init.threads } : {})
    })
    this.context = context
    const { LlamaChat } = await import('node-llama-cpp')
    this.pool = []
    for (let i = 0; i < this.slots; i++) {
      this.pool.push({ chat: new LlamaChat({ contextSequence: context.getSequence() }), busy: false })
    }
    if (!this.isCurrent(gen)) throw new LlmeshError('RUNNER_FAILED', 'embedded runner start was cancelled')
  }

  protected async shutdown (): Promise<void> {
    for (const w of this.waiting.splice(0)) w(undefined)
    for (const slot of this.pool) slot.chat.dispose()
    this.pool = []
    const context = this.context
    const model = this.llamaModel
    const llama = this.llama
    this.context = undefined
    this.llamaModel = undefined
    await context?.dispose().catch(() => {})
    await model?.dispose().catch(() => {})
    if (this.ownLlama) {
      this.llama = undefined
      this.ownLlama = false
      await llama?.dispose().catch(() => {})
    }
  }

  protected async check (): Promise<string | undefined> {
    if (this.llamaModel == null || this.llamaModel.disposed) return 'model not loaded'
    if (this.context == null || this.context.disposed) return 'context disposed'
    return undefined
  }

  protected override details (): Partial<RunnerDescription> {
    return { pid: process.pid }
  }

  protected override async runnerBusy (): Promise<number> {
    return this.pool.filter((s) => s.busy).length
  }

  private async acquire (signal: Signal): Promise<Slot> {
    const free = this.pool.find((s) => !s.busy)
    if (free != null) {
      free.busy = true
      return free
    }
    return await new Promise((resolve, reject) => {
      const onAbort = (): void => {
        const i = this.waiting.indexOf(take)
        if (i >= 0) this.waiting.splice(i, 1)
        reject(signal.reason)
      }
      const take = (slot: Slot | undefined): void => {
        signal.removeEventListener('abort', onAbort)
        if (slot == null) reject(new LlmeshError('RUNNER_FAILED', `runner ${this.id} stopped`))
        else resolve(slot)
      }
      signal.addEventListener('abort', onAbort, { once: true })
      this.waiting.push(take)
    })
  }

  private release (slot: Slot): void {
    const next = this.waiting.shift()
    if (next != null) next(slot)
    else slot.busy = false
  }

  protected async open (path: RunnerPath, body: Record<string, unknown>, signal: Signal): Promise<UpstreamResponse> {
    if (path !== '/v1/chat/completions') throw new LlmeshError('INVALID_REQUEST', `embedded runner does not serve ${path}`)
    const history = toHistory(chatMessages(body))
    if (history.length === 0) {
      return { status: 400, contentType: 'application/json', body: openAiErrorBody('messages must not be empty', 'invalid_request_error', 'invalid_request') }
    }
    const slot = await this.acquire(signal)
    const streaming = body['stream'] === true
    const writer = new ChatCompletionWriter(this.model)
    const gen = new AbortController()
    const onAbort = (): void => { gen.abort(signal.reason) }
    signal.addEventListener('abort', onAbort, { once: true })
    const queue = new ChunkQueue(() => { gen.abort(new Error('reader stopped')) })
    const meter = slot.chat.sequence.tokenMeter.getState()
    const temperature = numberField(body, 'temperature')
    const topP = numberField(body, 'top_p')
    const seed = numberField(body, 'seed')
    const limit = maxTokens(body)
    const stops = stopList(body)
    let text = ''
    void slot.chat.generateResponse(history, {
      signal: gen.signal,
      ...(limit != null ? { maxTokens: limit } : {}),
      ...(temperature != null ? { temperature } : {}),
      ...(topP != null ? { topP } : {}),
      ...(seed != null ? { seed } : {}),
      ...(stops.length > 0 ? { customStopTriggers: stops } : {}),
      onTextChunk: (chunk: string) => {
        text += chunk
        if (streaming && chunk !== '') queue.push(writer.delta(chunk))
      }
    }).then((res) => {
      const used = slot.chat.sequence.tokenMeter.diff(meter)
      const usage: Usage = { prompt_tokens: used.usedInputTokens, completion_tokens: used.usedOutputTokens, total_tokens: used.usedInputTokens + used.usedOutputTokens }
      const reason: FinishReason = res.metadata.stopReason === 'maxTokens' ? 'length' : 'stop'
      if (streaming) queue.push(writer.finish(reason, includeUsage(body) ? usage : undefined))
      else queue.push(writer.completion(text, reason, usage))
      queue.end()
    }, (err: unknown) => {
      queue.end(gen.signal.aborted && gen.signal.reason instanceof Error ? gen.signal.reason : err)
    }).finally(() => {
      signal.removeEventListener('abort', onAbort)
      this.release(slot)
    })
    return { status: 200, contentType: streaming ? 'text/event-stream' : 'application/json', body: queue }
  }
}

/** OpenAI messages -> node-llama-cpp chat history (system / user / model turns). */
function toHistory (messages: Array<{ role: string, content: string }>): ChatHistoryItem[] {
  const out: ChatHistoryItem[] = []
  for (const m of messages) {
    if (m.role === 'system' || m.role === 'developer') out.push({ type: 'system', text: m.content })
    else if (m.role === 'assistant') out.push({ type: 'model', response: [m.content] })
    else out.push({ type: 'user', text: m.content })
  }
  // generation continues the last model turn: open an empty one (as LlamaChatSession does)
  if (out.length > 0) out.push({ type: 'model', response: [] })
  return out
}
