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
