/** Version of the agent, published in every NodeRecord. */
export const AGENT_VERSION = '0.1.0'

/** The file in the data dir that says how to reach the running agent (AgentInfo); the CLI reads it. */
export const AGENT_INFO_FILE = 'agent.json'

/** How often the cluster document is saved to the data dir, so a restart starts warm. @default 5000 ms */
export const SNAPSHOT_INTERVAL_MS = 5000

/**
 * After a stop's grace (`shutdownGraceMs`) ended the requests in flight with an error event,
 * connections still open this much later are cut: long enough for the error event to be
 * written, short enough that a client not reading cannot hold the stop. @default 1000 ms
 */
export const SHUTDOWN_FORCE_MS = 1000

/**
 * A stop that has not finished this long after its grace (`shutdownGraceMs`) ended (runners
 * deaf to SIGTERM and SIGKILL'd after their own grace, a peer that does not close) is cut short:
 * the process exits, and its runners die with it (parent-death signal) or at the next start
 * (pid file). @default 15000 ms
 */
export const STOP_HARD_LIMIT_MS = 15_000

/**
 * Deepest nesting of arrays and objects a request body may have (at the HTTP API and in a
 * request forwarded by a peer). Real requests nest a handful of levels (messages, content
 * parts, tool schemas: well under 20); JSON.stringify and other recursive walks overflow the
 * stack at a few thousand, so a deeper body is refused with a 400 before anything recurses.
 * @default 64 levels
 */
export const MAX_JSON_DEPTH = 64

/**
 * How often the API keys file is checked for changes while requests come in (a key that
 * authenticates nobody triggers a check at once, so a new key works immediately). A revoked
 * key stops working within this time. @default 1000 ms
 */
export const API_KEYS_RECHECK_MS = 1000

/**
 * Most bytes of an oversized request body read and thrown away before its 413 is sent.
 * Closing a connection while the client is still sending makes the kernel answer with a
 * reset, and the client never reads the 413; reading the rest first lets it. A body larger
 * than this gets the 413 at once and its connection closed (the client may see a reset).
 * @default 128 MiB
 */
export const OVERSIZE_DRAIN_BYTES = 128 * 1024 * 1024

/**
 * How often Node's HTTP server checks its connections against `api.headersTimeoutMs` and
 * `api.requestTimeoutMs`: a timeout fires up to this much late. @default 1000 ms
 */
export const API_TIMEOUT_CHECK_MS = 1000

/** Default HTTP API port (`api.port`): next to Ollama's 11434, so switching a client over is one digit. @default 11435 */
export const DEFAULT_API_PORT = 11435
/** Default HTTP API address: loopback, so nothing off this host reaches the API until asked to. @default 127.0.0.1 */
export const DEFAULT_API_HOST = '127.0.0.1'
/** Largest request body the API reads, bytes (`api.bodyLimit`). @default 8 MiB */
export const API_BODY_LIMIT_BYTES = 8 * 1024 * 1024
/** Time for a client to send a request's head, ms (`api.headersTimeoutMs`); then 408. @default 10000 ms */
export const API_HEADERS_TIMEOUT_MS = 10_000
/** Time for a client to send a whole request, ms (`api.requestTimeoutMs`). @default 60000 ms */
export const API_REQUEST_TIMEOUT_MS = 60_000
/**
 * An idle keep-alive connection is closed after this long, ms (`api.keepAliveTimeoutMs`): longer
 * than clients keep idle connections, so a client never sends on one the server is closing.
 * @default 72000 ms
 */
export const API_KEEP_ALIVE_TIMEOUT_MS = 72_000
/** Most client connections at once (`api.maxConnections`). @default 1024 */
export const API_MAX_CONNECTIONS = 1024

/** On SIGTERM, requests in flight get this long to finish (`shutdownGraceMs`). @default 5000 ms */
export const SHUTDOWN_GRACE_MS = 5000

/** Cluster id of an agent started without one: agents only join peers of the same id. @default "default" */
export const DEFAULT_CLUSTER_ID = 'default'
/** @default "info" */
export const DEFAULT_LOG_LEVEL = 'info'

/**
 * How often a host reconsiders placement (pins to start, replicas to add, idle replicas to stop),
 * ms. Short enough that a sustained queue is seen within a few heartbeats; each round is a few
 * pure functions over the view. @default 500 ms
 */
export const PLACEMENT_RECONCILE_MS = 500
/**
 * Load progress is published in steps of this share: every step rewrites the placements entry,
 * which every peer receives. @default 0.1 (ten writes per load at most)
 */
export const PROGRESS_STEP = 0.1

/** Folder under the data dir where rpc-servers cache the tensors coordinators sent them. */
export const RPC_CACHE_DIR = 'rpc-cache'

/**
 * Longest wait of a split's coordinator for its members' rpc-servers to start (their
 * placements say ready), ms: past it the start fails and says how many did not. @default 60000
 */
export const SPLIT_MEMBERS_READY_MS = 60_000

/** How often a coordinator looks at its members' placements while they start, ms. @default 50 */
export const SPLIT_POLL_MS = 50

/** How long a split that ended keeps its failed placement (with why) in the document, ms. @default 60000 */
export const SPLIT_FAILED_KEEP_MS = 60_000

/**
 * Most dashboard event streams (`GET /ui/events`) open at once on one agent: each costs a view
 * serialised per tick; one more is refused (BUSY, 503) rather than served late. @default 16
 */
export const UI_MAX_CLIENTS = 16
/** How often a dashboard stream gets a `view` snapshot, ms. @default 1000 ms */
export const UI_VIEW_INTERVAL_MS = 1000
/** A comment line on an idle dashboard stream this often, ms, so proxies keep it open. @default 15000 ms */
export const UI_HEARTBEAT_MS = 15_000
/**
 * A dashboard stream whose unsent bytes pass this is dropped (the page reconnects) rather than
 * buffered without bound for a client that does not read. @default 1048576 bytes (1 MiB)
 */
export const UI_MAX_BUFFERED_BYTES = 1024 * 1024
/** Request events an agent keeps for a dashboard opened later (the newest). @default 100 */
export const UI_RECENT_REQUESTS = 100

/**
 * Most blocks-of-a-split parts (rpc-servers) one host holds at once, for all coordinators: a
 * peer naming this host in many plans gets no more processes. @default 4
 */
export const MAX_SPLIT_PARTS = 4
