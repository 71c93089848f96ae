import { z } from 'zod'

/** A model a host can serve. Names, sizes and digests only: local paths never leave the host. */
export const ModelInfoSchema = z.object({
  name: z.string().min(1).max(256),
  sizeBytes: z.number().int().nonnegative(),
  /** sha256 of the file's first 1 MiB and its size, hex: cheap, stable, tells copies apart */
  digest: z.string().max(128),
  format: z.enum(['gguf']).default('gguf'),
  // --- optional, read from the GGUF header without loading weights (runners' catalog) ---
  /** where the host found it: a configured file or folder, or Ollama's model store */
  source: z.enum(['file', 'ollama']).optional(),
  /** full sha256 of the file, hex, when known for free (Ollama names blobs by it) */
  sha256: z.string().max(128).optional(),
  /** `general.architecture`, e.g. llama, qwen2moe */
  architecture: z.string().max(64).optional(),
  /** weights, counted from the tensor shapes */
  parameters: z.number().nonnegative().optional(),
  /** transformer blocks (`<arch>.block_count`): the unit a placement splits */
  layers: z.number().int().nonnegative().optional(),
  /** context the model was trained for, tokens (`<arch>.context_length`) */
  contextLength: z.number().int().nonnegative().optional(),
  /** `<arch>.embedding_length` */
  embeddingLength: z.number().int().nonnegative().optional(),
  /** file type, e.g. Q4_K_M, F16 (`general.file_type`) */
  quantization: z.string().max(32).optional(),
  /** experts per MoE layer (`<arch>.expert_count`); absent for dense models */
  experts: z.number().int().nonnegative().optional(),
  /** experts active per token (`<arch>.expert_used_count`) */
  expertsUsed: z.number().int().nonnegative().optional(),
  /** weight bytes of the largest block (`blk.N.*` tensors): memory one layer needs on a host */
  bytesPerLayer: z.number().int().nonnegative().optional(),
  /** weight bytes outside the blocks (embeddings, output head, norms) */
  otherBytes: z.number().int().nonnegative().optional(),
  /** KV cache bytes per token of context over all layers at f16 */
  kvBytesPerToken: z.number().int().nonnegative().optional()
})
export type ModelInfo = z.infer<typeof ModelInfoSchema>

/** ONLY APPEND TO THIS LIST: kinds cross the wire in NodeRecords. */
export const RunnerKinds = ['llama-server', 'rpc-server', 'embedded', 'ollama', 'mlx'] as const
export const RunnerStates = ['starting', 'loading', 'ready', 'busy', 'failed', 'stopped'] as const

export const RunnerInfoSchema = z.object({
  id: z.string().min(1).max(128),
  kind: z.enum(RunnerKinds),
  model: z.string().min(1).max(256),
  state: z.enum(RunnerStates),
  slots: z.number().int().nonnegative(),
  /** times the runner was restarted after a crash, failed health checks or stalls */
  restarts: z.number().int().nonnegative().optional(),
  /** why it last failed, one line */
  lastError: z.string().max(512).optional(),
  /** rpc-server only: host:port on the mesh-private address that coordinators pass to `--rpc` */
  endpoint: z.string().max(256).optional()
})
export type RunnerInfo = z.infer<typeof RunnerInfoSchema>
export type RunnerState = RunnerInfo['state']

export const HardwareSchema = z.object({
  cpus: z.number().int().nonnegative(),
  memBytes: z.number().nonnegative(),
  platform: z.string().max(64),
  arch: z.string().max(64),
  /** GPUs found by nvidia-smi / rocm-smi / system_profiler; absent or empty means none */
  gpus: z.array(z.object({
    vendor: z.enum(['nvidia', 'amd', 'apple', 'other']),
    name: z.string().max(128),
    /** total VRAM, bytes (Apple: unified memory) */
    memTotalBytes: z.number().nonnegative(),
    /** free VRAM at probe time, bytes, when the tool reports it */
    memFreeBytes: z.number().nonnegative().optional()
  })).max(64).optional()
})
export type Hardware = z.infer<typeof HardwareSchema>

/**
 * The durable record each peer owns in the cluster document's `nodes` map, keyed by its peer
 * id. Only that peer writes it. Fast-changing numbers (load, heartbeats) are NOT here: they
 * travel on the metrics channel.
 */
export const NodeRecordSchema = z.object({
  peerId: z.string().min(1).max(128),
  name: z.string().min(1).max(128),
  version: z.string().max(64),
  protocol: z.number().int(),
  /** multiaddrs other agents dial */
  addrs: z.array(z.string().max(512)).max(32),
  /** the agent's local HTTP API, host:port */
  api: z.string().max(256),
  hardware: HardwareSchema,
  models: z.array(ModelInfoSchema).max(1024),
  runners: z.array(RunnerInfoSchema).max(256),
  startedAt: z.number(),
  updatedAt: z.number()
})
export type NodeRecord = z.infer<typeof NodeRecordSchema>
