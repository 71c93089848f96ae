/**
 * Runtime mechanics shared by runners, mesh and agent: the request path's abort source, the
 * process clock (and timers a part cancels in one call), the one backoff (runner restarts,
 * dispatch retries, redials) and the stream pipeline of a token stream (paced read, coalescing
 * write with backpressure). The contracts they serve (types, schemas, error codes) live in
 * `@llmesh/protocol`; this package adds only code that runs. `@llmesh/kit/polyfill` is imported
 * first by every entry point.
 *
 * The stream pipeline, as each layer composes it:
 * - runners read a runner's answer with a `PacedReader` (undici's dispatch controller is its
 *   source): the runner is read at most once per window, and not while the consumer is behind;
 * - the mesh writes an answer to its peer through a `Coalescer` whose `Sink` frames each batch
 *   as one DATA frame on the libp2p stream;
 * - the HTTP layer writes a stream to its client through a `Coalescer` whose `Sink` is the
 *   response, waiting on the client's socket when it is full.
 * Each sink's `drained()` is bounded by `drainedWithin` (the write-stall bound).
 */
export { Abort, abortSignalOf } from './abort.js'
export { BACKOFF_FACTOR, backoffCap, backoffDelay, type BackoffInit, type Jitter } from './backoff.js'
export { MAX_BATCH_BYTES, MAX_UNREAD_BYTES, STREAM_COALESCE_MS } from './constants.js'
export { systemClock, Timers, TimeoutError } from './clock.js'
export { streamClock } from './stream/clock.js'
export { AT_ONCE, Coalescer, type CoalescerInit } from './stream/coalescer.js'
export { PacedReader, type PacedReaderInit, type PausableSource } from './stream/paced-reader.js'
export { drainedWithin, type Sink } from './stream/sink.js'
