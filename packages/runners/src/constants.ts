/**
 * Defaults of the runners package. Every option that takes one documents it with `@default`;
 * code applies them as `init.x ?? X`.
 */

/** Parallel slots (`--parallel`): requests one runner serves at once. @default 2 */
export const DEFAULT_SLOTS = 2
/** Total context (`-c`), shared by the slots (each slot gets ctx / slots). @default 4096 tokens */
export const DEFAULT_CTX_SIZE = 4096
/** Loading a model that does not answer /health with 200 in this time fails the start. @default 300000 ms */
export const DEFAULT_START_TIMEOUT_MS = 300_000
/** A stopping runner that has not exited after SIGTERM gets SIGKILL after this. @default 5000 ms */
export const STOP_GRACE_MS = 5000
/**
 * A runner of a previous run of the agent, found alive at start (pid file), gets SIGTERM, then
 * SIGKILL after this; the new runners start only once it is gone, so one model never has two.
 * @default 2000 ms
 */
export const REAP_GRACE_MS = 2000
/** Poll interval while waiting for a reaped runner to exit. @default 50 ms */
export const REAP_POLL_MS = 50
/** Poll interval of /health (or a TCP connect) while a runner starts. @default 100 ms */
export const START_POLL_MS = 100

/**
 * A streaming response that produces no chunk for this long after its first one is aborted
 * with STALLED. 30 s is what the stall detectors of the systems llmesh replaces use: a healthy
 * runner emits a token every few ms to few hundred ms, even on CPU. @default 30000 ms
 */
export const DEFAULT_STALL_TIMEOUT_MS = 30_000
/**
 * Wait for the response head and the first chunk of a streaming response: prompt processing
 * (prefill) of a long prompt on CPU takes far longer than one token. @default 120000 ms
 */
export const DEFAULT_FIRST_TOKEN_TIMEOUT_MS = 120_000
/**
 * A non-streaming response arrives in one piece when generation ends, so no per-token stall can
 * be seen: the whole response gets this long. @default 600000 ms
 */
export const DEFAULT_NON_STREAM_TIMEOUT_MS = 600_000
/**
 * Consecutive stalls (no completed stream in between) after which a runner is marked 'failed'
 * and restarted: one stall may be a client's huge prompt, three in a row are a sick runner.
 * @default 3
 */
export const DEFAULT_STALLS_BEFORE_UNHEALTHY = 3

/** Interval of health checks of a ready runner. @default 5000 ms */
export const DEFAULT_HEALTH_INTERVAL_MS = 5000
/** One health check that takes longer than this counts as failed. @default 3000 ms */
export const DEFAULT_HEALTH_TIMEOUT_MS = 3000
/**
 * Consecutive failed health checks after which a running runner counts as crashed (and is
 * restarted). Detection time ~ HEALTH_FAILURES * HEALTH_INTERVAL_MS. @default 3
 */
export const DEFAULT_HEALTH_FAILURES = 3

/** First restart delay after a crash. @default 500 ms */
export const DEFAULT_RESTART_MIN_DELAY_MS = 500
/** Restart delays grow by this factor per consecutive failure. @default 2 */
export const DEFAULT_RESTART_FACTOR = 2
/** Cap of the restart delay: a runner that keeps failing is retried this often. @default 60000 ms */
export const DEFAULT_RESTART_MAX_DELAY_MS = 60_000
/**
 * Jitter applied to each restart delay, as a fraction (delay * (1 ± jitter)), so runners that
 * failed together (a GPU reset) do not restart in lockstep. @default 0.2
 */
export const DEFAULT_RESTART_JITTER = 0.2
/**
 * A runner ready for this long has recovered: its next failure restarts at the minimum delay and
 * starts a new count towards CRASH_LOOP_FAILURES. @default 60000 ms
 */
export const RESTART_RESET_AFTER_MS = 60_000
/**
 * Failures in a row, none after RESTART_RESET_AFTER_MS of being ready, after which a runner stops
 * restarting and stays 'failed' (its lastError and stderr tail say why): a model that cannot
 * load (corrupt file, too little memory, a bad flag) fails the same way every time, and each try
 * costs a load of its weights. Lower gives up sooner on a failure that would have passed (a GPU
 * reset, a port taken); higher keeps a broken model loading for longer, the backoff between
 * tries doubling up to DEFAULT_RESTART_MAX_DELAY_MS. @default 5
 */
export const DEFAULT_CRASH_LOOP_FAILURES = 5

/** Ollama's default address. @default http://127.0.0.1:11434 */
export const DEFAULT_OLLAMA_URL = 'http://127.0.0.1:11434'
/**
 * Requests llmesh sends to one Ollama model at once: Ollama's own OLLAMA_NUM_PARALLEL is not
 * visible through its API, so stay conservative. @default 1
 */
export const DEFAULT_OLLAMA_SLOTS = 1
/** Interval of re-reading Ollama's `/api/tags` so models pulled later appear. @default 30000 ms */
export const DEFAULT_OLLAMA_REFRESH_MS = 30_000
/** Requests sent to one mlx_lm.server at once. @default 1 */
export const DEFAULT_MLX_SLOTS = 1

/** Bytes of a model file hashed into its digest, with the file size. @default 1 MiB */
export const DIGEST_PREFIX_BYTES = 1024 * 1024
/** Lines of a runner's stderr kept to explain a failure. @default 20 */
export const STDERR_TAIL_LINES = 20
/**
 * Characters of stderr a failed runner hands over (`describe().stderrTail`), its last ones: the
 * placements entry carries it to every peer, so it is bounded like the protocol's
 * MAX_PLACEMENT_ERROR_CHARS. @default 2048
 */
export const STDERR_TAIL_CHARS = 2048
/**
 * Longest stdout line of a runner handed to its reader; a longer one is dropped whole. Bounds the
 * memory a runner's output can take: the lines read there (llama-server's state reports while
 * loading) are far shorter. @default 4096
 */
export const STDOUT_LINE_MAX_CHARS = 4096
/**
 * Load progress is published in steps of at least this share of the weights (and at its end):
 * each step is a state change the agent republishes, so a load costs at most 1 / step of them.
 * @default 0.05
 */
export const LOAD_PROGRESS_STEP = 0.05
/**
 * Tries of a llama-server launch whose port was taken between its pick and the bind (the port is
 * picked free, then released for the runner to bind): a new port each time, not counted as a
 * failure. @default 3
 */
export const PORT_BIND_ATTEMPTS = 3
/** Time one GPU probe tool (nvidia-smi, ...) may take before it counts as absent. @default 5000 ms */
export const GPU_PROBE_TIMEOUT_MS = 5000

/** Longest wait for `llama-server --help` when checking it for RPC support, ms. @default 15000 */
export const RPC_PROBE_TIMEOUT_MS = 15_000
