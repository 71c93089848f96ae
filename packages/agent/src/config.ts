import { hostname, homedir } from 'node:os'
import { join } from 'node:path'
import { z } from 'zod'
import { DEFAULT_STRATEGY, QUEUE_CAPACITY, STRATEGIES } from '@llmesh/scheduler'

/** Default HTTP API port: next to Ollama's 11434, so switching a client over is one digit. */
export const DEFAULT_API_PORT = 11435
/** Default libp2p TCP port. */
export const DEFAULT_P2P_PORT = 4778

function defaultDataDir (): string {
  const xdg = process.env['XDG_DATA_HOME']
  return join(xdg != null && xdg !== '' ? xdg : join(homedir(), '.local', 'share'), 'llmesh')
}

const ModelEntry = z.strictObject({
  /** path of a GGUF file on this host; it never leaves the host */
  path: z.string().min(1),
  /** name clients use; defaults to the file name without .gguf */
  name: z.string().min(1).max(256).regex(/^[\w.:/-]+$/, 'letters, digits and . _ : / - only').optional()
})

export const AgentConfigSchema = z.strictObject({
  /** human name of this host in `llmesh status`. @default the host name */
  name: z.string().min(1).max(128).default(() => hostname()),
  /** agents only join peers of the same cluster id. @default "default" */
  clusterId: z.string().min(1).max(40).regex(/^[\w-]+$/, 'letters, digits, _ and - only').default('default'),
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
    host: z.string().default('127.0.0.1'),
    /** 0 picks a free port. @default 11435 */
    port: z.number().int().min(0).max(65535).default(DEFAULT_API_PORT),
    /** largest request body, bytes. @default 8 MiB */
    bodyLimit: z.number().int().positive().default(8 * 1024 * 1024),
    /**
     * further Host names a loopback API answers besides localhost, loopback addresses and
     * `host` (e.g. a local reverse proxy's name); any other Host is refused 403 (DNS
     * rebinding). @default []
     */
    allowedHosts: z.array(z.string().min(1).max(253)).default([]),
    /** time for a client to send a request's head, ms; then 408 and the connection closes. @default 10000 ms */
    headersTimeoutMs: z.number().int().positive().default(10_000),
    /**
     * time for a client to send a whole request (head and body), ms; the response may stream
     * for longer. @default 60000 ms
     */
    requestTimeoutMs: z.number().int().positive().default(60_000),
    /**
     * an idle keep-alive connection is closed after this long, ms. Longer than clients keep
     * idle connections (many reuse one without knowing the server's timeout, and a POST sent
     * on a connection the server is closing fails); idle connections count against
     * maxConnections. @default 72000 ms
     */
    keepAliveTimeoutMs: z.number().int().positive().default(72_000),
    /** most client connections at once; further ones are closed as they come. @default 1024 */
    maxConnections: z.number().int().positive().default(1024)
  }).prefault({}).refine((a) => a.headersTimeoutMs <= a.requestTimeoutMs, { message: 'needs headersTimeoutMs <= requestTimeoutMs' }),
  p2p: z.strictObject({
    /** libp2p listen multiaddrs. @default /ip4/0.0.0.0/tcp/4778 */
    listen: z.array(z.string()).default([`/ip4/0.0.0.0/tcp/${DEFAULT_P2P_PORT}`]),
    /** peers dialled at start and re-dialled while unconnected (multiaddrs, ideally with /p2p/<id>) */
    bootstrap: z.array(z.string()).default([]),
    /** find peers of the same cluster on the LAN by multicast DNS. @default true */
    mdns: z.boolean().default(true),
    /** mDNS query period (a new agent asks at start anyway; known peers are redialled every second). @default 30000 ms */
    mdnsIntervalMs: z.number().int().min(100).default(30_000),
    /** heartbeat period on the metrics topic. @default 500 ms */
    heartbeatIntervalMs: z.number().int().min(50).default(500)
  }).prefault({}),
  /**
   * Failure detection (LAN defaults). A host silent for suspectAfterMs is suspect (still
   * routable if connected), for deadAfterMs dead (not routed to), and its entry is pruned after
   * pruneAfterMs. deadAfterMs is the longest link flap that evicts nobody.
   */
  membership: z.strictObject({
    /** @default 1500 ms (three missed heartbeats) */
    suspectAfterMs: z.number().int().positive().default(1500),
    /** @default 4000 ms */
    deadAfterMs: z.number().int().positive().default(4000),
    /** @default 600000 ms (10 min) */
    pruneAfterMs: z.number().int().positive().default(600_000)
  }).prefault({}).refine((m) => m.suspectAfterMs < m.deadAfterMs && m.deadAfterMs < m.pruneAfterMs, {
    message: 'needs suspectAfterMs < deadAfterMs < pruneAfterMs'
  }),
  /** GGUF models this host serves, each by one runner (llama-server, else embedded llama.cpp) */
  models: z.array(ModelEntry).default([]),
  /** folders scanned for GGUF files: listed in the catalog (names, sizes, metadata), started on first use */
  modelDirs: z.array(z.string().min(1)).default([]),
  /**
   * Adopt an Ollama server already running on this host, so its models join the mesh:
   * `{ url }` (url defaults to http://127.0.0.1:11434). Opt-in, so an agent never takes over
   * a server its owner did not mean to share. @default false
   */
  ollama: z.union([z.literal(false), z.strictObject({ url: z.string().url().default('http://127.0.0.1:11434') })]).default(false),
  /**
   * Adopt an `mlx_lm.server` (or any OpenAI-compatible server) on this host: `{ url, model }`
   * publishes `model` to the mesh and forwards its requests there. @default none
   */
  mlx: z.strictObject({
    url: z.string().url(),
    model: z.string().min(1).max(256),
    /** the model name the server expects; mlx_lm serves the one it was started with */
    upstreamModel: z.string().min(1).optional(),
    slots: z.number().int().min(1).optional()
  }).optional(),
  /** a stream that yields no token for this long is aborted with a clear error. @default 30000 ms */
  stallTimeoutMs: z.number().int().positive().default(30_000),
  /**
   * longest wait for a streaming runner's first byte, ms; a request that times out is failed
   * over to another host. @default 120000 ms (the runners')
   */
  firstTokenTimeoutMs: z.number().int().positive().optional(),
  /**
   * routing strategy when a request names none (header `x-llmesh-strategy`): performance,
   * least-loaded, round-robin, fastest, random or prefix-affinity. @default "performance"
   */
  strategy: z.enum(STRATEGIES).default(DEFAULT_STRATEGY),
  /** admission on this host: requests beyond the runners' slots wait in a priority queue */
  queue: z.strictObject({
    /** requests waiting per runner beyond its busy slots; more are answered 429. @default 64 */
    capacity: z.number().int().min(0).max(100_000).default(QUEUE_CAPACITY),
    /**
     * longest wait for a slot when the request sets no `x-llmesh-deadline-ms`, ms; a request
     * still queued then is answered 504 DEADLINE_EXCEEDED. @default 120000 ms
     */
    deadlineMs: z.number().int().positive().default(120_000)
  }).prefault({}),
  /**
   * What this agent waits for from a peer it forwarded a request to, and how long a client that
   * stops reading may hold a slot. A peer is asked for keepalive frames while it works (queued,
   * evaluating the prompt, generating a non-streaming answer), so silence means a peer that does
   * not answer. Its first token is awaited at most the request's queue deadline (when it may
   * queue) + `firstTokenTimeoutMs` (streaming; 600000 ms for a whole non-streaming answer) +
   * `headTimeoutMs`.
   */
  limits: z.strictObject({
    /**
     * a peer that sends nothing (no head, no keepalive) this long after a request went to it is
     * taken for silent: the request fails over to the next host. @default 10000 ms
     */
    headTimeoutMs: z.number().int().min(100).max(600_000).default(10_000),
    /**
     * once a peer answers, the longest silence between its frames (keepalives count) and inside
     * a frame: before the first token the request fails over, after it the stream ends with a
     * STALLED error. @default 10000 ms
     */
    frameGapMs: z.number().int().min(100).max(600_000).default(10_000),
    /**
     * a client (HTTP, or a peer this host serves) that reads nothing for this long loses its
     * stream: it ends with a STALLED error and the runner's slot is freed. @default 30000 ms
     */
    writeStallMs: z.number().int().min(100).max(3_600_000).default(30_000)
  }).prefault({}),
  llamaServer: z.strictObject({
    /**
     * llama-server binary. @default $LLMESH_LLAMA_SERVER, else `llama-server` on PATH, else
     * none: models run on the embedded llama.cpp
     */
    binary: z.string().min(1).optional(),
    /** parallel slots per runner. @default 2 */
    slots: z.number().int().min(1).max(256).default(2),
    /** total context per runner, tokens. @default 4096 */
    ctxSize: z.number().int().min(128).default(4096),
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
    extraArgs: z.array(z.string()).default([])
  }).prefault({}),
  /**
   * On SIGTERM, requests in flight get this long to finish; then they end with an error (an SSE
   * client gets an error event) and the agent stops its runners and exits. @default 5000 ms
   */
  shutdownGraceMs: z.number().int().min(0).max(600_000).default(5000),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info')
})

export type AgentConfig = z.infer<typeof AgentConfigSchema>
export type AgentConfigInput = z.input<typeof AgentConfigSchema>

/**
 * Validates a config once, at start: one clear line per bad option, unknown keys rejected,
 * the result frozen.
 */
export function parseConfig (input: unknown): Readonly<AgentConfig> {
  const parsed = AgentConfigSchema.safeParse(input)
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.length > 0 ? i.path.join('.') : '(config)'}: ${i.message}`)
    throw new ConfigError(`invalid llmesh config:\n${lines.join('\n')}`)
  }
  return Object.freeze(parsed.data)
}

export class ConfigError extends Error {
  override name = 'ConfigError'
  readonly code = 'INVALID_CONFIG'
}
