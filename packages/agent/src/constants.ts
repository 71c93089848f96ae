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
