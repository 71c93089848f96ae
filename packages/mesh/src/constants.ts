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
