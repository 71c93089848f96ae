import { z } from 'zod'
import { MAX_RUNNER_SLOTS } from '@llmesh/protocol'
import { DEFAULT_CTX_SIZE, DEFAULT_OLLAMA_URL, DEFAULT_SLOTS, DEFAULT_STALL_TIMEOUT_MS } from './constants.js'

/**
 * The runners' part of a host's configuration, as zod schemas with this package's named
 * defaults. `@llmesh/agent` composes them into its config schema and validates once, at start;
 * what they produce is what `RunnerManager` takes.
 */

/** One GGUF model this host serves, by one runner. */
export const ModelEntrySchema = z.strictObject({
  /** path of a GGUF file on this host; it never leaves the host */
  path: z.string().min(1),
  /** name clients use; defaults to the file name without .gguf */
  name: z.string().min(1).max(256).regex(/^[\w.:/-]+$/, 'letters, digits and . _ : / - only').optional()
})
export type ModelEntry = z.infer<typeof ModelEntrySchema>

/** The llama-server runners of this host. */
export const LlamaServerConfigSchema = z.strictObject({
  /**
   * llama-server binary. @default $LLMESH_LLAMA_SERVER, else `llama-server` on PATH, else
   * none: models run on the embedded llama.cpp
   */
  binary: z.string().min(1).optional(),
  /** parallel slots per runner. @default DEFAULT_SLOTS (2) */
  slots: z.number().int().min(1).max(MAX_RUNNER_SLOTS).default(DEFAULT_SLOTS),
  /** total context per runner, tokens. @default DEFAULT_CTX_SIZE (4096) */
  ctxSize: z.number().int().min(128).default(DEFAULT_CTX_SIZE),
  /** layers offloaded to the GPU (-ngl); unset leaves llama-server's default */
  gpuLayers: z.number().int().min(0).optional(),
  /**
   * CPU threads of each llama-server (-t); unset leaves llama-server's default (every
   * physical core). Where the model runs on the CPU, leaving a core to the agent and the
   * other runners keeps them from fighting over it.
   */
  threads: z.number().int().min(1).max(1024).optional(),
  /**
   * further llama-server flags, e.g. ["--embeddings"] for a dedicated embedding model
   * (llama-server then serves /v1/embeddings and no completions). @default []
   */
  extraArgs: z.array(z.string()).default([]),
  /**
   * run llama-server as a router's child: its load progress is published, and a loaded one exits
   * when its agent is gone, even without a parent-death signal. `false` runs it plainly (no
   * progress; a killed agent's runners are left to the parent-death signal and the pid file).
   * @default true
   */
  routerChild: z.boolean().default(true)
}).prefault({})
export type LlamaServerConfig = z.infer<typeof LlamaServerConfigSchema>

/**
 * The rpc-server of this host: it holds blocks of models split across hosts, for a coordinator
 * elsewhere. One per split model, bound to 127.0.0.1 only (it has no authentication): the
 * coordinator's agent reaches it through the mesh, over an encrypted stream that only
 * cluster members can open.
 */
export const RpcServerConfigSchema = z.strictObject({
  /**
   * rpc-server binary. @default $LLMESH_RPC_SERVER, else `ggml-rpc-server` or `rpc-server`
   * beside the llama-server binary or on PATH, else none: this host holds no blocks of split
   * models
   */
  binary: z.string().min(1).optional(),
  /**
   * cache the tensors it receives on local disk (`-c`): a coordinator's next load sends hashes
   * instead of the weights it already sent. @default true
   */
  cache: z.boolean().default(true),
  /** folder of that cache (rpc-server adds `rpc/`). @default DATA_DIR/rpc-cache */
  cacheDir: z.string().min(1).optional(),
  /** CPU threads of each rpc-server (-t); unset leaves rpc-server's default */
  threads: z.number().int().min(1).max(1024).optional()
}).prefault({})
export type RpcServerConfig = z.infer<typeof RpcServerConfigSchema>

/**
 * Adopt an Ollama server already running on this host: `false`, or `{ url }`.
 * @default false; url @default DEFAULT_OLLAMA_URL
 */
export const OllamaConfigSchema = z.union([
  z.literal(false),
  z.strictObject({ url: z.string().url().default(DEFAULT_OLLAMA_URL) })
]).default(false)
export type OllamaConfig = z.infer<typeof OllamaConfigSchema>

/** Adopt an `mlx_lm.server` (or any OpenAI-compatible server): `{ url, model }`. @default none */
export const MlxConfigSchema = z.strictObject({
  url: z.string().url(),
  model: z.string().min(1).max(256),
  /** the model name the server expects; mlx_lm serves the one it was started with */
  upstreamModel: z.string().min(1).optional(),
  slots: z.number().int().min(1).optional()
}).optional()
export type MlxConfig = z.infer<typeof MlxConfigSchema>

/** A stream that yields no token for this long is aborted with STALLED. @default DEFAULT_STALL_TIMEOUT_MS */
export const StallTimeoutMsSchema = z.number().int().positive().default(DEFAULT_STALL_TIMEOUT_MS)

/** Longest wait for a streaming runner's first byte, ms. @default DEFAULT_FIRST_TOKEN_TIMEOUT_MS (applied by the runners) */
export const FirstTokenTimeoutMsSchema = z.number().int().positive().optional()
