import { hostname, homedir } from 'node:os'
import { join } from 'node:path'
import { z } from 'zod'
import { LlmeshError } from '@llmesh/protocol'
import { MembershipConfigSchema, P2pConfigSchema, PeerLimitsConfigSchema } from '@llmesh/mesh'
import { PlacementConfigSchema, QueueConfigSchema, StrategyConfigSchema } from '@llmesh/scheduler'
import {
  FirstTokenTimeoutMsSchema, LlamaServerConfigSchema, MlxConfigSchema, ModelEntrySchema, OllamaConfigSchema, RpcServerConfigSchema, StallTimeoutMsSchema
} from '@llmesh/runners'
import {
  API_BODY_LIMIT_BYTES, API_HEADERS_TIMEOUT_MS, API_KEEP_ALIVE_TIMEOUT_MS, API_MAX_CONNECTIONS, API_REQUEST_TIMEOUT_MS,
  DEFAULT_API_HOST, DEFAULT_API_PORT, DEFAULT_CLUSTER_ID, DEFAULT_LOG_LEVEL, SHUTDOWN_GRACE_MS
} from './constants.js'

export { DEFAULT_API_PORT } from './constants.js'
export { DEFAULT_P2P_PORT } from '@llmesh/mesh'

function defaultDataDir (): string {
  const xdg = process.env['XDG_DATA_HOME']
  return join(xdg != null && xdg !== '' ? xdg : join(homedir(), '.local', 'share'), 'llmesh')
}

/**
 * The agent's configuration: its own options (name, cluster, data dir, api, shutdown, log
 * level), composed with the schemas (and so the named defaults) of the packages that own the
 * rest: `@llmesh/mesh` (p2p, membership, limits), `@llmesh/runners` (models, llamaServer,
 * ollama, mlx, stall and first-token timeouts) and `@llmesh/scheduler` (strategy, queue).
 * Validated once by `parseConfig`.
 */
export const AgentConfigSchema = z.strictObject({
  /** human name of this host in `llmesh status`. @default the host name */
  name: z.string().min(1).max(128).default(() => hostname()),
  /** agents only join peers of the same cluster id. @default "default" */
  clusterId: z.string().min(1).max(40).regex(/^[\w-]+$/, 'letters, digits, _ and - only').default(DEFAULT_CLUSTER_ID),
  /**
   * The cluster key file (32 bytes, the swarm-key format `llmesh keygen` writes): every connection
   * between agents is protected with it, so a host without it cannot connect. Unset: the data
   * dir's `cluster.key`, created on first start when the agent listens off loopback (lab mode).
   * @default none
   */
  clusterKeyFile: z.string().min(1).optional(),
  /**
   * Listen off loopback without a cluster key: anyone on the LAN who knows the cluster id can
   * join. An explicit opt-out of lab mode, warned about at every start. @default false
   */
  openMesh: z.boolean().default(false),
  /** peer key, cluster snapshot and agent.json live here. @default $XDG_DATA_HOME/llmesh */
  dataDir: z.string().min(1).default(defaultDataDir),
  api: z.strictObject({
    /**
     * listen address. Off loopback the API needs API keys (`llmesh apikey add`): the agent
     * does not start there without one. @default 127.0.0.1
     */
    host: z.string().default(DEFAULT_API_HOST),
    /** 0 picks a free port. @default 11435 */
    port: z.number().int().min(0).max(65535).default(DEFAULT_API_PORT),
    /** largest request body, bytes. @default 8 MiB */
    bodyLimit: z.number().int().positive().default(API_BODY_LIMIT_BYTES),
    /**
     * further Host names a loopback API answers besides localhost, loopback addresses and
     * `host` (e.g. a local reverse proxy's name); any other Host is refused 403 (DNS
     * rebinding). @default []
     */
    allowedHosts: z.array(z.string().min(1).max(253)).default([]),
    /** time for a client to send a request's head, ms; then 408 and the connection closes. @default 10000 ms */
    headersTimeoutMs: z.number().int().positive().default(API_HEADERS_TIMEOUT_MS),
    /**
     * time for a client to send a whole request (head and body), ms; the response may stream
     * for longer. @default 60000 ms
     */
    requestTimeoutMs: z.number().int().positive().default(API_REQUEST_TIMEOUT_MS),
    /**
     * an idle keep-alive connection is closed after this long, ms. Longer than clients keep
     * idle connections (many reuse one without knowing the server's timeout, and a POST sent
     * on a connection the server is closing fails); idle connections count against
     * maxConnections. @default 72000 ms
     */
    keepAliveTimeoutMs: z.number().int().positive().default(API_KEEP_ALIVE_TIMEOUT_MS),
    /** most client connections at once; further ones are closed as they come. @default 1024 */
    maxConnections: z.number().int().positive().default(API_MAX_CONNECTIONS)
  }).prefault({}).refine((a) => a.headersTimeoutMs <= a.requestTimeoutMs, { message: 'needs headersTimeoutMs <= requestTimeoutMs' }),
  /**
   * the libp2p node: `listen` multiaddrs (@default /ip4/0.0.0.0/tcp/4778), `bootstrap` peers
   * dialled at start and re-dialled while unconnected (@default []), `mdns` discovery on the LAN
   * (@default true) and its query period `mdnsIntervalMs` (@default 30000 ms), and the
   * `heartbeatIntervalMs` (@default 500 ms, at least 50)
   */
  p2p: P2pConfigSchema,
  /**
   * Failure detection (LAN defaults). A host silent for suspectAfterMs is suspect (still
   * routable if connected), for deadAfterMs dead (not routed to), and its entry is pruned after
   * pruneAfterMs. deadAfterMs is the longest link flap that evicts nobody. @default 1500,
   * 4000 and 600000 ms
   */
  membership: MembershipConfigSchema,
  /** GGUF models this host serves, each by one runner (llama-server, else embedded llama.cpp) */
  models: z.array(ModelEntrySchema).default([]),
  /** folders scanned for GGUF files: listed in the catalog (names, sizes, metadata), started on first use */
  modelDirs: z.array(z.string().min(1)).default([]),
  /**
   * Adopt an Ollama server already running on this host, so its models join the mesh:
   * `{ url }` (url defaults to http://127.0.0.1:11434). Opt-in, so an agent never takes over
   * a server its owner did not mean to share. @default false
   */
  ollama: OllamaConfigSchema,
  /**
   * Adopt an `mlx_lm.server` (or any OpenAI-compatible server) on this host: `{ url, model }`
   * publishes `model` to the mesh and forwards its requests there. @default none
   */
  mlx: MlxConfigSchema,
  /** a stream that yields no token for this long is aborted with a clear error. @default 30000 ms */
  stallTimeoutMs: StallTimeoutMsSchema,
  /**
   * longest wait for a streaming runner's first byte, ms; a request that times out is failed
   * over to another host. @default 120000 ms (the runners')
   */
  firstTokenTimeoutMs: FirstTokenTimeoutMsSchema,
  /**
   * routing strategy when a request names none (header `x-llmesh-strategy`): performance,
   * least-loaded, round-robin, fastest, random or prefix-affinity. @default "performance"
   */
  strategy: StrategyConfigSchema,
  /**
   * admission on this host: requests beyond the runners' slots wait in a priority queue.
   * `capacity`: requests waiting per runner beyond its busy slots, more are answered 429
   * (@default 64); `deadlineMs`: longest wait for a slot when the request sets no
   * `x-llmesh-deadline-ms`, then 504 DEADLINE_EXCEEDED (@default 120000 ms)
   */
  queue: QueueConfigSchema,
  /**
   * What this agent waits for from a peer it forwarded a request to, and how long a client that
   * stops reading may hold a slot. A peer is asked for keepalive frames while it works (queued,
   * evaluating the prompt, generating a non-streaming answer), so silence means a peer that does
   * not answer. Its first token is awaited at most the request's queue deadline (when it may
   * queue) + `firstTokenTimeoutMs` (streaming; 600000 ms for a whole non-streaming answer) +
   * `headTimeoutMs`. `headTimeoutMs` (@default 10000 ms), `frameGapMs` (@default 10000 ms),
   * `writeStallMs` (@default 30000 ms): see the mesh's PeerLimitsConfigSchema.
   */
  limits: PeerLimitsConfigSchema,
  /**
   * Models on demand: which models this host runs is the mesh's decision (a request for a model
   * no host runs starts it on the best host that has the file). `memoryBytes`: memory this host
   * gives to models (@default the GPUs' VRAM, else `memoryShare` 0.75 of RAM); a model that does
   * not fit evicts the least recently used unpinned one, or is answered 507 with the figures
   * unless `loadAnyway` (@default false; per request `x-llmesh-load-anyway: 1`). `pins`:
   * `[{ model, host? }]` kept loaded, never evicted (host: a peer id, or "self" for this host;
   * absent: anywhere in the mesh). `idleUnloadMs` (@default 0: off), `scaleUpAfterMs` (@default 10000),
   * `scaleDownAfterMs` (@default 300000), `evictDrainMs` (@default 30000): see the scheduler's
   * PlacementConfigSchema.
   */
  placement: PlacementConfigSchema,
  /**
   * the llama-server runners: `binary` (@default $LLMESH_LLAMA_SERVER, else `llama-server` on
   * PATH, else the embedded llama.cpp), `slots` per runner (@default 2), `ctxSize` tokens per
   * runner (@default 4096), `gpuLayers` (-ngl), `threads` (-t), `extraArgs` (@default []), `routerChild` (@default true)
   */
  llamaServer: LlamaServerConfigSchema,
  rpcServer: RpcServerConfigSchema,
  /**
   * On SIGTERM, requests in flight get this long to finish; then they end with an error (an SSE
   * client gets an error event) and the agent stops its runners and exits. @default 5000 ms
   */
  shutdownGraceMs: z.number().int().min(0).max(600_000).default(SHUTDOWN_GRACE_MS),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default(DEFAULT_LOG_LEVEL)
})

export type AgentConfig = z.infer<typeof AgentConfigSchema>
export type AgentConfigInput = z.input<typeof AgentConfigSchema>

/**
 * Validates a config once, at start: one clear line per bad option, unknown keys rejected,
 * the result frozen all the way down (a part handed a sub-object cannot change what another
 * part reads).
 */
export function parseConfig (input: unknown): Readonly<AgentConfig> {
  const parsed = AgentConfigSchema.safeParse(input)
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.length > 0 ? i.path.join('.') : '(config)'}: ${i.message}`)
    throw new ConfigError(`invalid llmesh config:\n${lines.join('\n')}`)
  }
  return deepFreeze(parsed.data)
}

/** Freezes a plain value and every object and array in it. */
function deepFreeze<T> (value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const v of Object.values(value)) deepFreeze(v)
  }
  return value
}

/** The agent's configuration is invalid (a bad option, a data dir another agent holds): INVALID_CONFIG. */
export class ConfigError extends LlmeshError {
  override name = 'ConfigError'

  constructor (message: string, options?: { cause?: unknown }) {
    super('INVALID_CONFIG', message, options)
  }
}
