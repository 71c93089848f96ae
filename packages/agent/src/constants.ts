/** Version of the agent, published in every NodeRecord. */
export const AGENT_VERSION = '0.1.0'

/** How often the cluster document is saved to the data dir, so a restart starts warm. @default 5000 ms */
export const SNAPSHOT_INTERVAL_MS = 5000
