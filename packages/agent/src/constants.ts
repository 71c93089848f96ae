/** Version of the agent, published in every NodeRecord. */
export const AGENT_VERSION = '0.1.0'

/** How often the cluster document is saved to the data dir, so a restart starts warm. @default 5000 ms */
export const SNAPSHOT_INTERVAL_MS = 5000

/**
 * How long a router counts a host as its "busy" answer described it (full, with that queue),
 * unless a heartbeat of that host comes first: twice the heartbeat period, so a late heartbeat
 * does not leave the host looking full. @default 1000 ms
 */
export const BUSY_REPORT_TTL_MS = 1000

/**
 * A client that reads nothing of its stream for this long loses it (STALLED) and frees the
 * runner's slot; `limits.writeStallMs` in the config. @default 30000 ms
 */
export const WRITE_STALL_MS = 30_000
