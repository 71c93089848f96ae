/**
 * Runtime mechanics shared by runners, mesh and agent: the request path's abort source, the
 * process clock (and timers a part cancels in one call), the one backoff (runner restarts,
 * dispatch retries, redials) and the flush timing of a token stream. The contracts they serve
 * (types, schemas, error codes) live in `@llmesh/protocol`; this package adds only code that
 * runs. `@llmesh/kit/polyfill` is imported first by every entry point.
 */
export { Abort, abortSignalOf } from './abort.js'
export { BACKOFF_FACTOR, backoffCap, backoffDelay, type BackoffInit, type Jitter } from './backoff.js'
export { STREAM_COALESCE_MS } from './constants.js'
export { systemClock, Timers, TimeoutError } from './clock.js'
