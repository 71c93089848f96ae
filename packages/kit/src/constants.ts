/**
 * A fast token stream leaves an agent (as infer frames to a peer, as bytes to the client) at
 * most once per this many ms, and the serving agent reads its runner no more often (see
 * PacedReader); what arrives in between goes out together. A stream slower than that (a GPU
 * host at 50 tokens/s) goes out token by token, unchanged, and the first token is never held.
 * At a few thousand tokens per second, one read, write, encryption and wakeup per token cost
 * more CPU than the tokens themselves, taken from the runner on a shared machine. 8 ms = 125
 * updates a second, more than a screen shows. The cost: the last tokens of a fast stream wait up
 * to this long at each agent. Measured against a shorter window in docs/BENCHMARKS.md.
 * @default 8 ms
 */
export const STREAM_COALESCE_MS = 8

/**
 * Bytes a coalescer gathers at most: a batch this large goes out at once, whatever the window,
 * so a fast source (a large answer, not tokens) is held back by its sink's backpressure and not
 * gathered in memory for a whole window. A token stream never comes near it.
 * @default 256 KiB
 */
export const MAX_BATCH_BYTES = 256 * 1024

/**
 * Bytes a paced reader has delivered and its consumer not yet taken beyond which it stops
 * reading its source, until the consumer is below half of it: a consumer that stops reading
 * holds back the runner (whose bytes wait in its socket) instead of the agent's memory.
 * @default 1 MiB
 */
export const MAX_UNREAD_BYTES = 1024 * 1024
