/**
 * Defaults of the scheduler, with their units and the trade-off each one makes. Every option
 * that takes one of these documents it as `@default`; callers override with `init.x ?? X`.
 */

// ---------------------------------------------------------------------------------------------
// Requests

/** Lowest and highest request priority; a higher number is served first. */
export const MIN_PRIORITY = 0
export const MAX_PRIORITY = 10
/**
 * Priority of a request that names none: the middle, so a client can both raise and lower
 * its requests against untagged traffic.
 * @default 5
 */
export const DEFAULT_PRIORITY = 5

// ---------------------------------------------------------------------------------------------
// Performance scoring (see performance.ts for the formula these feed)

/**
 * Output length assumed for a request that does not say (`max_tokens`), tokens. Sets how much
 * decode speed weighs against time to first token: at 256 tokens a host at 20 tok/s spends
 * 12.8 s decoding, so tokens/s dominates a first-token latency of a few hundred ms, which is
 * what a chat user waits for. Short-answer workloads should pass `expectedTokens`.
 * @default 256 tokens
 */
export const EXPECTED_OUTPUT_TOKENS = 256

/**
 * First-token latency assumed for a host that has reported none, when no other candidate has
 * either, ms. When some candidates report, the median of theirs is used instead, so a new host
 * is assumed average: neither shunned nor flooded before it has a record.
 * @default 250 ms
 */
export const DEFAULT_LATENCY_MS = 250

/**
 * Decode speed assumed for a host that has reported none, when no other candidate has either,
 * tokens/s. Same median rule as DEFAULT_LATENCY_MS.
 * @default 20 tokens/s
 */
export const DEFAULT_TOKENS_PER_SEC = 20

/**
 * How much a host's per-request decode speed drops when all its slots are busy, as a fraction:
 * llama-server's slots share one GPU by continuous batching, so a stream on a full host runs
 * slower than on an idle one. 0.5 means "a full host serves each stream at 2/3 of its idle
 * speed" (service time x1.5), which is what llama.cpp shows with a few slots on one GPU. A
 * larger value spreads requests more eagerly over idle hosts, a smaller one packs them onto
 * the fastest host until its slots run out.
 * @default 0.5
 */
export const BATCH_SLOWDOWN = 0.5

/**
 * Share of a target's queue a request of priority MAX_PRIORITY is expected to jump: the target
 * orders its queue by effective priority, so a priority-10 request waits behind few of the
 * queued requests, a priority-0 request behind all of them. Scales linearly in between. Below
 * 1 because aging lets old low-priority requests overtake (see AGING_PER_SEC).
 * @default 0.9
 */
export const PRIORITY_QUEUE_JUMP = 0.9

/**
 * Floor of the success rate the score divides by. Cost / successRate is the expected time
 * including retries (a geometric number of tries); the floor keeps a host that failed
 * everything recently finite, so it stays rankable as a last resort and can recover.
 * @default 0.05
 */
export const MIN_SUCCESS_RATE = 0.05

/**
 * Cost added to a remote host for the extra network hop (libp2p stream open + first frame), ms.
 * Small on purpose: it decides near-ties in favour of the local host (no hop, no chance of a
 * partition mid-request) without keeping requests local when a remote host is truly better.
 * @default 2 ms
 */
export const REMOTE_HOP_MS = 2

/**
 * Cost of a cold start: a runner that is registered for the model but still starting or
 * loading its weights, ms. Only counted when the request allows cold targets. 15 s is the
 * order of loading a 7-13B GGUF from NVMe into VRAM; the queue of a loaded host is nearly
 * always shorter.
 * @default 15000 ms
 */
export const COLD_START_MS = 15_000

/**
 * Free VRAM below which a host counts as under memory pressure, bytes. Under it, long
 * contexts risk failing to allocate KV cache or spilling to host memory.
 * @default 1 GiB
 */
export const VRAM_HEADROOM_BYTES = 1024 ** 3

/**
 * Cost added to a host with no free VRAM at all, ms; scaled linearly down to 0 at
 * VRAM_HEADROOM_BYTES free. Large enough to move traffic off a host near OOM when another
 * has room, small against a queue wait, so a full cluster still uses it.
 * @default 2000 ms
 */
export const VRAM_PRESSURE_MS = 2000

/**
 * Age after which a host's reported load (busy slots, queue, VRAM) is not trusted, ms.
 * Heartbeats come every 500 ms; 2000 ms is four missed in a row, after membership has already
 * called the host suspect (1500 ms). Stale reports are ignored: the router then counts only
 * the claims it knows of, and adds STALE_PENALTY_MS.
 * @default 2000 ms
 */
export const METRICS_STALE_MS = 2000

/**
 * Cost added to a remote host whose metrics are stale or absent while other candidates report,
 * ms: it may be gone, and its load is a guess. Never to the own host, which is not gone. Less than one request's service time, so a
 * silent host is still used when the others are loaded.
 * @default 500 ms
 */
export const STALE_PENALTY_MS = 500

// ---------------------------------------------------------------------------------------------
// Prefix affinity

/**
 * Load (occupied / slots) at or above which the host rendezvous hashing picked for a prefix
 * counts as saturated and the request falls back to the performance ranking. 1.0 = "keep the
 * conversation on its host while that host has a free slot": waiting a whole generation for a
 * slot (seconds) costs more than the prefill a cache hit saves (tens to hundreds of ms on a
 * GPU for chat-length prompts). Raise it for very long shared prefixes (RAG, agents), where
 * prefill is the expensive part.
 * @default 1.0
 */
export const AFFINITY_MAX_LOAD = 1.0

// ---------------------------------------------------------------------------------------------
// Priority queue and admission

/**
 * Effective-priority points a queued request gains per second of waiting:
 * effective = priority + AGING_PER_SEC x ageSeconds. At 0.5 a priority-0 request overtakes a
 * fresh priority-10 request after 20 s, which bounds starvation: no request waits more than
 * (MAX_PRIORITY - its priority) / AGING_PER_SEC seconds behind newer arrivals. Larger is
 * fairer, smaller honours priorities longer.
 * @default 0.5 per second
 */
export const AGING_PER_SEC = 0.5

/**
 * Requests a host's queue holds beyond its busy slots. Bounded so a burst is refused early
 * (429 + Retry-After) instead of timing out late; 64 is a few minutes of work for a 2-4 slot
 * host at chat lengths.
 * @default 64
 */
export const QUEUE_CAPACITY = 64

/**
 * Longest wait for a slot when a request sets no deadline (`x-llmesh-deadline-ms`), ms; a request
 * still queued then is answered 504 DEADLINE_EXCEEDED. Long enough for a full queue of chat
 * requests on a small host to drain; a client that cannot wait that long says so per request.
 * @default 120000 ms
 */
export const QUEUE_DEADLINE_MS = 120_000

/** Retry-After bounds when a queue is full, seconds (HTTP wants whole seconds). */
export const MIN_RETRY_AFTER_SEC = 1
/** @default 60 s */
export const MAX_RETRY_AFTER_SEC = 60

/**
 * Weight of the newest sample in the queue's drain-interval estimate (time between two
 * dequeues), 0..1.
 * @default 0.2
 */
export const DRAIN_EWMA_ALPHA = 0.2

// ---------------------------------------------------------------------------------------------
// Circuit breaker

/**
 * Consecutive failures (connect error, 5xx, stall, protocol error) that open a host's circuit.
 * 5 rides out a one-off hiccup; "busy" and client aborts never count.
 * @default 5
 */
export const BREAKER_FAILURE_THRESHOLD = 5

/**
 * How long an opened circuit stays open before one probe request is let through, ms. Doubles
 * every time a probe fails, up to BREAKER_MAX_COOL_DOWN_MS; a success resets it.
 * @default 5000 ms
 */
export const BREAKER_COOL_DOWN_MS = 5000
/** @default 60000 ms */
export const BREAKER_MAX_COOL_DOWN_MS = 60_000

// ---------------------------------------------------------------------------------------------
// Retries

/**
 * Full-jitter exponential backoff: the delay before retry n (n >= 1) is uniform in
 * [0, min(BACKOFF_MAX_MS, BACKOFF_BASE_MS x 2^(n-1))). Full jitter spreads the retries of
 * many routers that saw the same failure, so they do not arrive at the next host together.
 * @default 50 ms
 */
export const BACKOFF_BASE_MS = 50
/** @default 2000 ms */
export const BACKOFF_MAX_MS = 2000

/**
 * Attempts one request may make in all (first try + retries), across hosts.
 * @default 4
 */
export const MAX_ATTEMPTS = 4

/**
 * Retry budget (Finagle's): retries may be at most RETRY_BUDGET_RATIO of the requests seen over
 * RETRY_BUDGET_WINDOW_MS, plus RETRY_BUDGET_MIN_RETRIES so a quiet router can still retry. It
 * stops retry storms: when every host fails, a router adds at most 20% extra load.
 * @default 0.2
 */
export const RETRY_BUDGET_RATIO = 0.2
/** @default 10000 ms */
export const RETRY_BUDGET_WINDOW_MS = 10_000
/** @default 10 retries per window */
export const RETRY_BUDGET_MIN_RETRIES = 10

// ---------------------------------------------------------------------------------------------
// Dispatch (see dispatch/)

/**
 * Most rounds one request's dispatch takes in all (targets asked, switches to queueing, hosts
 * skipped for a probe already out), whatever the retry decisions say: a guard against a loop,
 * never reached by the rules themselves.
 * @default 32 rounds
 */
export const MAX_DISPATCHES = 32

/**
 * How long a router counts a host as its "busy" answer described it (full, with that queue),
 * unless a heartbeat of that host comes first: twice the heartbeat period, so a late heartbeat
 * does not leave the host looking full.
 * @default 1000 ms
 */
export const BUSY_REPORT_TTL_MS = 1000

// ---------------------------------------------------------------------------------------------
// Outcome statistics

/**
 * Weight of the newest sample in the latency and tokens/s EWMAs, 0..1. 0.2 follows a change
 * within about 10 requests and smooths single outliers.
 * @default 0.2
 */
export const STATS_EWMA_ALPHA = 0.2

/**
 * Weight of the newest outcome in the success-rate EWMA, 0..1.
 * @default 0.1
 */
export const SUCCESS_EWMA_ALPHA = 0.1

/**
 * Half-life with which a success rate recovers towards 1 while a host gets no traffic, ms.
 * Without it a host that failed a few times would be avoided forever (no traffic, no new
 * samples); with it, it is tried again within a minute or two. The circuit breaker covers
 * the fast path (a host that is down right now).
 * @default 30000 ms
 */
export const SUCCESS_RECOVERY_HALF_LIFE_MS = 30_000

/**
 * Samples a router needs of its own before its observations of a host replace what the host
 * reports about itself (see mergeObserved).
 * @default 3
 */
export const MIN_OWN_SAMPLES = 3

/**
 * Performance costs of hosts with a free slot within this fraction of the best one count as
 * equal to it when ranking, so the less loaded, the local host and then the spread order
 * decide between them (PERFORMANCE_MAX_TIE_BAND widens it for noisy hosts). Without it, routers that all
 * measured host A 3% faster than B send a simultaneous burst to A alone and collect "busy"
 * answers (27 in 120 requests in the request benchmark, against 1 for least-loaded); EWMAs
 * of a few percent apart are noise anyway. Costs are compared in bands of this width on a log
 * scale counted from the best cost (the hosts within the band of the best are equal to it),
 * which keeps the order transitive.
 * @default 0.1
 */
export const PERFORMANCE_TIE_BAND = 0.1

/**
 * Upper bound of the performance tie band when measurements are noisy. The band widens to how
 * much single requests' service times vary on the candidate hosts (their EW standard
 * deviation over the expected service time, the largest of the hosts with a free slot): a host
 * that is faster by less than one request's own variation does not reliably serve the next
 * request faster, while every router that picks it in the same instant collides there. On one
 * busy machine the tiny model's time to first token varies by 30-50% from request to request,
 * and three equal hosts' EWMAs drift 1.5x apart; with the fixed 10% band the request
 * benchmark's three routers collected 43 "busy" answers per 180 requests, least-loaded 3. The
 * cap keeps a host twice as fast the first choice of every router, however noisy.
 * @default 0.5
 */
export const PERFORMANCE_MAX_TIE_BAND = 0.5

// ---------------------------------------------------------------------------------------------
// Placement of whole models (see placement/)

/**
 * Share of a host's RAM its models may take when it has no GPU (or only unified memory) and
 * its config sets no `placement.memoryBytes`. The rest stays for the OS, the agent and page
 * cache; a larger share packs more models per host at the risk of swapping under load.
 * @default 0.75
 */
export const PLACEMENT_MEMORY_SHARE = 0.75

/**
 * Unload a model idle this long, ms; 0 keeps idle models loaded until their memory is needed
 * (eviction). Unloading early frees memory for other models but the next request pays a cold
 * start.
 * @default 0 (off)
 */
export const IDLE_UNLOAD_MS = 0

/**
 * A model's hosts together must have more requests waiting than slots for this long before
 * one more host is started for it, ms. Shorter follows bursts faster but starts replicas that
 * finish loading after the burst is over; a load takes seconds to minutes.
 * @default 10000 ms
 */
export const SCALE_UP_AFTER_MS = 10_000

/**
 * A replica (a host started for demand) idle this long is stopped, ms, while another host's
 * copy of the model is ready. Longer keeps memory busy; shorter risks stopping a replica the
 * next burst needs again, and starting it costs a whole load.
 * @default 300000 ms
 */
export const SCALE_DOWN_AFTER_MS = 300_000

/**
 * Longest a serving runner chosen for eviction may finish its requests before it is stopped,
 * ms. Longer spares more running answers; the request waiting for the room waits as long.
 * @default 30000 ms
 */
export const EVICT_DRAIN_MS = 30_000

/**
 * Context a model is planned with when the request or config gives none, tokens: its KV cache
 * is sized for it. Larger plans conservatively (fewer models per host), smaller risks a runner
 * that fails to allocate its cache.
 * @default 4096 tokens
 */
export const DEFAULT_CTX_SIZE = 4096

/**
 * Memory a runner takes beside weights and KV cache, bytes: llama.cpp's compute buffers and
 * the runtime. It grows with the batch size and the model's width; a fixed figure keeps plans
 * comparable between hosts, at the cost of a small error either way on very small or very
 * large models.
 * @default 256 MiB
 */
export const RUNNER_OVERHEAD_BYTES = 256 * 1024 ** 2

/**
 * Bytes per element of the KV cache when it has to be estimated from the model's shape: f16,
 * llama-server's default cache type.
 * @default 2 bytes
 */
export const KV_ELEMENT_BYTES = 2

/**
 * KV cache per token of context as a share of the weights' bytes, when the model gives neither
 * its KV size nor its layers and width. A guess: it overestimates small-context use of large
 * models and underestimates very long contexts; the host's own load is the final check.
 * @default 0.00003 (a 4096-token context then costs about an eighth of the weights)
 */
export const KV_SHARE_OF_WEIGHTS_PER_TOKEN = 0.00003

/**
 * How much faster a host evaluates a prompt than it generates, tokens per second: the prefill
 * rate the cache affinity assumes, as this factor times the host's measured decode rate.
 * Measured with llama-server on CPU (tiny model: 14,400 prompt tokens/s against 1,730
 * generated); GPUs prefill faster still, so on them the affinity overrates a cache hit a
 * little and keeps conversations home through somewhat longer queues.
 * @default 8
 */
export const PREFILL_TO_DECODE_SPEED = 8

/**
 * Conversations a router remembers the host of (the host it last sent each to), beside what
 * hosts say they hold: the router's own sends are news before any heartbeat. Least recently
 * sent go first.
 * @default 4096
 */
export const CACHE_AFFINITY_MEMORY = 4096

/**
 * Least share of its cost a host holding the conversation's cache keeps after the prefill it
 * saves is taken off: costs stay positive (the tie bands compare their ratios), and among
 * several hosts the cheapest still wins.
 * @default 0.01
 */
export const CACHE_MIN_COST_SHARE = 0.01

/**
 * Requests waiting per slot up to which the host holding a conversation's cache keeps it, its
 * cost notwithstanding: 1 = a wait of about one service time. A conversation moved elsewhere
 * evaluates its whole history again, and every later turn of it would wait there too; one
 * service time of waiting is the price of staying, and a longer queue moves it.
 * @default 1
 */
export const CACHE_MAX_QUEUE_PER_SLOT = 1

/**
 * Most tokens a host's report of a conversation's cache counts for: above the longest
 * context of today's models, so an honest report is never cut, and a claim of more cannot buy
 * a conversation unbounded patience.
 * @default 1048576
 */
export const MAX_CACHED_TOKENS = 2 ** 20
