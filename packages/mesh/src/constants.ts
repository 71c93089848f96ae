/** How often a bootstrap address is re-dialled while we hold no connection to it. @default 2000 ms */
export const BOOTSTRAP_REDIAL_MS = 2000

/**
 * libp2p connection-monitor ping interval. 2 s detects a dead link in about 3 s; the libp2p
 * default (10 s) takes about 10 s. @default 2000 ms
 */
export const PING_INTERVAL_MS = 2000

/** A state-vector sync exchange that takes longer than this is abandoned. @default 10000 ms */
export const SYNC_TIMEOUT_MS = 10_000

/** Largest single sync message accepted from a peer. @default 16 MiB */
export const MAX_SYNC_MESSAGE_BYTES = 16 * 1024 * 1024

/** Heartbeat period on the metrics topic. 500 ms lets a silent host be suspected within 1.5 s. @default 500 ms */
export const HEARTBEAT_INTERVAL_MS = 500

/** mDNS query period: how soon a healed link or a new host is found again. @default 1000 ms */
export const MDNS_INTERVAL_MS = 1000

/** A state-vector sync with one random peer this often, against any lost delta. @default 15000 ms */
export const ANTI_ENTROPY_INTERVAL_MS = 15_000

/** How often dead entries are looked for. @default 30000 ms */
export const PRUNE_CHECK_INTERVAL_MS = 30_000

/** Owners rewrite their record every pruneAfterMs * this, so live entries are never pruned. @default 0.25 */
export const RECORD_REFRESH_FRACTION = 0.25
