/**
 * A fast token stream leaves an agent (as infer frames to a peer, as bytes to the client) at
 * most once per this many ms, and the serving agent reads its runner no more often (see
 * requestPaced in @llmesh/runners); what arrives in between goes out together. A stream slower
 * than that (a GPU host at 50 tokens/s) goes out token by token, unchanged, and the first token
 * is never held. At a few thousand tokens per second, one read, write, encryption and wakeup
 * per token cost more CPU than the tokens themselves, taken from the runner on a shared
 * machine. 8 ms = 125 updates a second, more than a screen shows; measured against 2 ms
 * (tiny model, ~3,400 tokens/s, 30 streams each, both in one run): agent CPU per 1000-token
 * stream 60 -> 36 ms serving locally, 73 + 86 -> 51 + 54 ms (serving + entry) through a peer.
 * The cost: the last tokens of a fast stream wait up to this long at each agent.
 * @default 8 ms
 */
export const STREAM_COALESCE_MS = 8
