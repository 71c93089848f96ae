/**
 * @llmesh/runners: the local inference servers of one host and what it has on disk.
 *
 * - `Runner`: one interface (start, stop, health, capacity, infer, info / describe, onState)
 *   with adapters `LlamaServerRunner`, `RpcServerRunner`, `EmbeddedRunner` (node-llama-cpp),
 *   `OllamaRunner` (adopts a running Ollama), `MlxRunner` (adopts a running mlx_lm.server).
 * - dialect: the OpenAI <-> Ollama codec (requests, answers, stream chunks), used by
 *   `OllamaRunner` and by the agent's Ollama API.
 *   Every adapter supervises itself (restart with capped backoff after an exit, failed health
 *   checks or repeated stalls) and watches its streams for stalls (LlmeshError `STALLED`).
 * - `RunnerManager`: the runners of a host from one options object; catalog, hardware, onChange.
 * - catalog: `describeModel`, `scanModelDir`, `scanOllamaStore` (GGUF headers, no weights).
 * - hardware: `probeHardware`, `probeGpus`.
 *
 * This package knows nothing about peers.
 */
export type { Runner, RunnerPath, RunnerResponse, RunnerHealth, RunnerCapacity, RunnerDescription, RunnerStateListener } from './runner.js'
export { BaseRunner, PermanentRunnerError, restartDelay, type RestartBackoffInit, type RunnerCommonInit, type UpstreamResponse } from './base-runner.js'
export { LlamaServerRunner, parsePrometheus, DEFAULT_SLOTS, DEFAULT_CTX_SIZE, DEFAULT_START_TIMEOUT_MS, STOP_GRACE_MS, type LlamaServerInit } from './llama-server.js'
export { RpcServerRunner, RPC_SERVER_MODEL, type RpcServerInit } from './rpc-server.js'
export { EmbeddedRunner, loadLlama, type EmbeddedInit, type EmbeddedLlamaOptions } from './embedded.js'
export { OllamaRunner, OllamaClient, ollamaTagToModelInfo, type OllamaInit, type OllamaTag, type OllamaLoaded } from './ollama.js'
export {
  textLines, toOllamaChat, fromOllamaChat, ollamaSampling, ollamaMaxTokens, ollamaChatToOpenAi, ollamaGenerateToOpenAi, ollamaEmbedToOpenAi,
  openAiEvents, openAiErrorMessage, ollamaLoaded, toOllamaObject, toOllamaNdjson, toOllamaEmbeddings, SYSTEM_CLOCK,
  type OllamaOptions, type OllamaFormat, type OllamaChatRequest, type OllamaGenerateRequest, type OllamaShape, type OpenAiChunk, type DialectClock
} from './dialect/ollama.js'
export { MlxRunner, MLX_DEFAULT_MODEL, type MlxInit } from './mlx.js'
export { RunnerManager, type RunnerManagerInit, type ModelSpec, type EnsureOptions } from './manager.js'
export {
  describeModel,
  modelNameFromPath,
  readGgufFacts,
  scanModelDir,
  scanOllamaStore,
  ollamaModelName,
  defaultOllamaStore,
  type LocalModel,
  type GgufFacts,
  type DescribeOptions,
  type ScanOptions
} from './catalog.js'
export { probeHardware, probeGpus, parseNvidiaSmi, parseRocmSmi, parseSystemProfiler, runTool, type GpuInfo, type GpuProbeOptions, type ToolRunner } from './hardware.js'
export { freePort, PortPicker } from './port.js'
export { LoadDotsParser, parseChildLoadProgress } from './load-progress.js'
export { RunnerProcess, type SpawnOptions, type ProcessIo, type ExitInfo } from './process.js'
export { parentDeathPrefix, processStartTime, readPidFile, formatPidFile, reapRunners, selfStamp, isRunning, type RunnerPidEntry, type ProcessStamp, type PidFileContent } from './pid-file.js'
export { watchStalls, type StallWatchOptions } from './stall.js'
export { ChatCompletionWriter } from './openai.js'
export * from './constants.js'
export {
  ModelEntrySchema, LlamaServerConfigSchema, RpcServerConfigSchema, OllamaConfigSchema, MlxConfigSchema, StallTimeoutMsSchema, FirstTokenTimeoutMsSchema,
  type ModelEntry, type LlamaServerConfig, type RpcServerConfig, type OllamaConfig, type MlxConfig
} from './config.js'
