/** Name of the systemd unit `llmesh service install` writes (`llmesh.service`). @default "llmesh" */
export const SERVICE_NAME = 'llmesh'

/** Label of the launchd job `llmesh service install` writes on macOS. @default "llmesh.agent" */
export const LAUNCHD_LABEL = 'llmesh.agent'

/** Wait before the service manager restarts an agent that failed, s (systemd RestartSec, launchd ThrottleInterval). @default 5 s */
export const SERVICE_RESTART_DELAY_S = 5

/**
 * Time the service manager gives a stopping agent beyond the agent's own limit (its
 * `shutdownGraceMs` + STOP_HARD_LIMIT_MS, after which it exits by itself), ms, before it kills
 * the agent and its runners: the agent always gets to leave the mesh and stop its runners
 * itself. @default 5000 ms
 */
export const SERVICE_STOP_MARGIN_MS = 5000

/** Environment variables of the installing shell a service keeps (an API key never goes into a unit file). @default PATH and LLMESH_* but LLMESH_API_KEY */
export const SERVICE_ENV_KEEP = /^(PATH|LLMESH_(?!API_KEY$)[A-Z0-9_]+)$/

/** How long a command waits for an agent's answer (headers, then each part of the body), ms. @default 5000 ms */
export const API_TIMEOUT_MS = 5000

/**
 * How long `llmesh chat` waits for an answer to start and then for each next part of it, ms:
 * the agent answers once the first token is in, and a model not loaded anywhere is loaded
 * first (minutes for a large one). @default 300000 ms
 */
export const CHAT_STREAM_TIMEOUT_MS = 300_000

/** Time between two tables of `llmesh status --watch`, ms. @default 1000 ms */
export const WATCH_INTERVAL_MS = 1000
