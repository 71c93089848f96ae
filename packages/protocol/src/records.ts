import { z } from 'zod'

/**
 * Most parallel slots a runner may report in its record: the agent's own config allows no more,
 * and a peer claiming thousands would otherwise be ranked first and draw every routed prompt.
 * @default 256
 */
export const MAX_RUNNER_SLOTS = 256

/** Largest memory figure (RAM, VRAM, model bytes) a record may carry: 1 PiB. @default 2^50 bytes */
export const MAX_RECORD_BYTES_FIGURE = 2 ** 50

/** Most CPUs a record may report. @default 65536 */
export const MAX_RECORD_CPUS = 65_536

const bytes = z.number().int().nonnegative().max(MAX_RECORD_BYTES_FIGURE)
const count = z.number().int().nonnegative().max(2 ** 32)
/** ms since the epoch; finite, never negative */
const time = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER)

/** A model a host can serve. Names, sizes and digests only: local paths never leave the host. */
export const ModelInfoSchema = z.object({
  name: z.string().min(1).max(256),
  sizeBytes: bytes,
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
  parameters: z.number().nonnegative().max(MAX_RECORD_BYTES_FIGURE).optional(),
  /** transformer blocks (`<arch>.block_count`): the unit a placement splits */
  layers: count.optional(),
  /** context the model was trained for, tokens (`<arch>.context_length`) */
  contextLength: count.optional(),
  /** `<arch>.embedding_length` */
  embeddingLength: count.optional(),
  /** file type, e.g. Q4_K_M, F16 (`general.file_type`) */
  quantization: z.string().max(32).optional(),
  /** experts per MoE layer (`<arch>.expert_count`); absent for dense models */
  experts: count.optional(),
  /** experts active per token (`<arch>.expert_used_count`) */
  expertsUsed: count.optional(),
  /** weight bytes of the largest block (`blk.N.*` tensors): memory one layer needs on a host */
  bytesPerLayer: bytes.optional(),
  /** weight bytes outside the blocks (embeddings, output head, norms) */
  otherBytes: bytes.optional(),
  /** KV cache bytes per token of context over all layers at f16 */
  kvBytesPerToken: bytes.optional()
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
  slots: z.number().int().nonnegative().max(MAX_RUNNER_SLOTS),
  /** times the runner was restarted after a crash, failed health checks or stalls */
  restarts: count.optional(),
  /** why it last failed, one line */
  lastError: z.string().max(512).optional(),
  /** rpc-server only: host:port on the mesh-private address that coordinators pass to `--rpc` */
  endpoint: z.string().max(256).optional(),
  /** while loading: share of the weights loaded, 0..1, when the runner reports it */
  progress: z.number().min(0).max(1).optional()
})
export type RunnerInfo = z.infer<typeof RunnerInfoSchema>
export type RunnerState = RunnerInfo['state']

export const HardwareSchema = z.object({
  cpus: z.number().int().nonnegative().max(MAX_RECORD_CPUS),
  memBytes: z.number().nonnegative().max(MAX_RECORD_BYTES_FIGURE),
  platform: z.string().max(64),
  arch: z.string().max(64),
  /** GPUs found by nvidia-smi / rocm-smi / system_profiler; absent or empty means none */
  gpus: z.array(z.object({
    vendor: z.enum(['nvidia', 'amd', 'apple', 'other']),
    name: z.string().max(128),
    /** total VRAM, bytes (Apple: unified memory) */
    memTotalBytes: z.number().nonnegative().max(MAX_RECORD_BYTES_FIGURE),
    /** free VRAM at probe time, bytes, when the tool reports it */
    memFreeBytes: z.number().nonnegative().max(MAX_RECORD_BYTES_FIGURE).optional()
  })).max(64).optional(),
  /**
   * memory this host gives to the models it runs, bytes: the config's `placement.memoryBytes`,
   * else the GPUs' total VRAM, else a share of RAM (see the agent's config). Placement plans
   * against it; absent on older peers (then memBytes counts)
   */
  modelMemBytes: z.number().nonnegative().max(MAX_RECORD_BYTES_FIGURE).optional()
})
export type Hardware = z.infer<typeof HardwareSchema>

/**
 * The durable record each peer owns in the cluster document's `nodes` map, keyed by its peer
 * id. Only that peer writes it, and it signs it: `sig` is its libp2p key's signature over the
 * record's canonical content (see the state package's recordContent), so a record is believed
 * whatever path its bytes came by. Fast-changing numbers (load, heartbeats) are NOT here: they
 * travel on the metrics channel.
 */
export const NodeRecordSchema = z.object({
  peerId: z.string().min(1).max(128),
  name: z.string().min(1).max(128),
  version: z.string().max(64),
  protocol: z.number().int().nonnegative().max(2 ** 16),
  /** multiaddrs other agents dial */
  addrs: z.array(z.string().max(512)).max(32),
  /** the agent's local HTTP API, host:port */
  api: z.string().max(256),
  hardware: HardwareSchema,
  /**
   * what this host can take in a model split across hosts: `coordinator`, a llama-server that
   * reaches rpc-servers (it runs llama-server, not the embedded runner); `member`, an
   * rpc-server holding blocks. Absent: neither (an older peer, or no such binary)
   */
  split: z.object({ coordinator: z.boolean(), member: z.boolean() }).optional(),
  models: z.array(ModelInfoSchema).max(1024),
  runners: z.array(RunnerInfoSchema).max(256),
  startedAt: time,
  updatedAt: time,
  /** the owner's signature over the canonical content (every field but this one), base64url */
  sig: z.string().max(256)
})
export type NodeRecord = z.infer<typeof NodeRecordSchema>
/** A record as its owner builds it, before it is signed. */
export type UnsignedNodeRecord = Omit<NodeRecord, 'sig'>
