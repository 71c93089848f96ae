/** How often a bootstrap address is re-dialled while we hold no connection to it. @default 2000 ms */
export const BOOTSTRAP_REDIAL_MS = 2000

/**
 * libp2p connection-monitor ping interval. Liveness comes from heartbeats (500 ms), and a
 * connection to a peer found dead is closed by the mesh; the ping only frees connections that
 * die silently otherwise. Each ping opens a stream, so a short interval costs real bytes.
 * @default 10000 ms
 */
export const PING_INTERVAL_MS = 10_000

/** A state-vector sync exchange that takes longer than this is abandoned. @default 10000 ms */
export const SYNC_TIMEOUT_MS = 10_000

/** Largest single sync message accepted from a peer. @default 16 MiB */
export const MAX_SYNC_MESSAGE_BYTES = 16 * 1024 * 1024

/** Heartbeat period on the metrics topic. 500 ms lets a silent host be suspected within 1.5 s. @default 500 ms */
export const HEARTBEAT_INTERVAL_MS = 500

/**
 * mDNS query period. A new agent queries at start and every agent answers, so joining does not
 * wait for this; known peers are redialled from their records (RECONNECT_INTERVAL_MS), so a
 * healed link does not wait for it either. It only bounds how soon a peer missed at start is
 * found (and every agent answers every query: with 20 hosts a 5 s period alone kept a core busy).
 * @default 30000 ms
 */
export const MDNS_INTERVAL_MS = 30_000

/** Least time between two redials of one peer, counted from the start of the first. @default 1000 ms */
export const RECONNECT_INTERVAL_MS = 1000

/** How often the redial pass looks for peers due (no network unless one is). @default 250 ms */
export const RECONNECT_TICK_MS = 250

/**
 * Longest wait between redials of one unreachable peer. Short, so a healed link is used again
 * within about a second; a redial of a gone host costs one TCP SYN. @default 1000 ms
 */
export const RECONNECT_MAX_BACKOFF_MS = 1000

/**
 * A redial of a known peer (one we were connected to) gives up after this. A SYN into a cut link would otherwise wait for the kernel's
 * retransmissions (1, 3, 7 s ...) and the heal would be noticed late. A LAN connect takes milliseconds. @default 1000 ms
 */
export const RECONNECT_DIAL_TIMEOUT_MS = 1000

/**
 * A first dial to a peer found by mDNS gives up after this. Generous: while many agents start
 * at once on a small machine, noise handshakes queue behind each other, and a short timeout
 * would abort them all and start over. @default 10000 ms
 */
export const FIRST_DIAL_TIMEOUT_MS = 10_000

/** The peer with the larger id waits this long before dialling, so a pair dials once. @default 1500 ms */
export const DIAL_TIEBREAK_MS = 1500

/** A graceful leave waits this long for its goodbye heartbeats to go out. @default 500 ms */
export const LEAVE_TIMEOUT_MS = 500

/** A state-vector sync with one random peer this often, against any lost delta. @default 15000 ms */
export const ANTI_ENTROPY_INTERVAL_MS = 15_000

/** How often dead entries are looked for. @default 30000 ms */
export const PRUNE_CHECK_INTERVAL_MS = 30_000

/** Owners rewrite their record every pruneAfterMs * this, so live entries are never pruned. @default 0.25 */
export const RECORD_REFRESH_FRACTION = 0.25

/** Inbound connections being upgraded at once before libp2p refuses more. @default 64 */
export const MAX_PENDING_INBOUND = 64

/**
 * Heartbeats one agent sends per second at most; beyond 10 peers at the base period the period
 * stretches (see Mesh.heartbeatIntervalMs). @default 20
 */
export const MAX_HEARTBEATS_PER_SEC = 20

/** How often membership states are re-evaluated for logs and probes. @default 250 ms */
export const MEMBER_WATCH_MS = 250

/**
 * An out-of-turn heartbeat (this router's claims changed) goes this long after the first
 * change it carries, with every change made meanwhile. Not at once: a heartbeat to every peer
 * per request costs all of them CPU exactly when a burst needs it (in the request benchmark,
 * sending at once with 20 ms between heartbeats cost the three-entry burst about 20% at p50
 * against one central scheduler; without it the gap was gone). Routers deciding in the same
 * instant do not wait for claims anyway: the spread tie-break sets them apart. Claims still
 * travel five times sooner than with the periodic heartbeat, and a router under load sends at
 * most 1000/NUDGE_MS extra heartbeats per second. @default 100 ms
 */
export const NUDGE_MS = 100

/**
 * Delay of an urgent nudge (a conversation new to this host), ms: long enough to carry the other
 * conversations admitted in the same instant, short enough to reach the other entries before the
 * conversation's next turn (a program's next turn follows the answer at once). @default 5 ms
 */
export const URGENT_NUDGE_MS = 5
/**
 * Least time between two urgent nudges, ms: with the regular nudges and the periodic heartbeat a
 * peer sends at most 1000/URGENT_NUDGE_GAP_MS + 1000/NUDGE_MS + 2 heartbeats per second, within
 * what receivers read (MAX_HEARTBEATS_IN_PER_SEC). @default 50 ms
 */
export const URGENT_NUDGE_GAP_MS = 50

/**
 * Idle `/llmesh/infer/1` streams kept per peer for later requests: opening a stream costs a
 * protocol negotiation round trip and peer-store writes on both sides, more than the request's
 * own round trip on a LAN. Beyond this many idle ones, a finished stream is closed. @default 16
 */
export const MAX_IDLE_INFER_STREAMS = 16

/** An idle infer stream unused this long is closed. @default 60000 ms */
export const INFER_STREAM_IDLE_MS = 60_000

/**
 * `/llmesh/infer/1` streams per connection and direction before libp2p refuses (resets) more.
 * libp2p's default of 32 inbound would turn the 33rd concurrent request from one entry agent
 * into a failed forward; the serving host's admission queue, not the stream count, is what
 * limits load. Below yamux's 1000 streams per connection. @default 512
 */
export const MAX_INFER_STREAMS = 512

/**
 * Largest tokens/s a heartbeat may report; more is lowered to this and counted. Above the
 * single-stream decode speed of any host llmesh runs on (a tiny test model on a CPU reaches a
 * few thousand): a host that reports itself infinitely fast is held to this until routers
 * have measured it themselves. @default 20000 tokens/s
 */
export const MAX_REPORTED_TOKENS_PER_SEC = 20_000

/** Smallest non-zero time to first token a heartbeat may report (0 means "not measured"). @default 1 ms */
export const MIN_REPORTED_LATENCY_MS = 1

/**
 * Queue a heartbeat may report per ready runner of the sender's record, and the queue part of
 * the bound on a router's claims on a host (its slots + this per runner): the default queue
 * capacity of a runner (scheduler QUEUE_CAPACITY). @default 64 requests
 */
export const MAX_REPORTED_QUEUE_PER_RUNNER = 64

/** Shortest heartbeat period a peer may announce; shorter is raised to this. @default 50 ms */
export const MIN_ANNOUNCED_INTERVAL_MS = 50

/**
 * Longest heartbeat period a peer may announce; longer is lowered to this. Receivers scale their
 * silence thresholds by the announced period, so this bounds how long a peer that went quiet
 * stays alive in the view (x3 to suspect: 30 s). The period stretches to this with 200 peers.
 * @default 10000 ms
 */
export const MAX_ANNOUNCED_INTERVAL_MS = 10_000

/**
 * Heartbeats of one peer read per second at most; more are dropped and counted. A peer sends
 * one per period plus at most 1000/NUDGE_MS + 1000/URGENT_NUDGE_GAP_MS out-of-turn ones. @default 50
 */
export const MAX_HEARTBEATS_IN_PER_SEC = 50

/** Peers whose heartbeat rate is tracked before ended windows are swept. @default 1024 */
export const MAX_HEARTBEAT_RATE_WINDOWS = 1024

/**
 * `/llmesh/infer/1` streams one peer may hold open to this agent at once, over all its
 * connections; more are reset at once and counted. A router keeps at most
 * MAX_IDLE_INFER_STREAMS idle ones and one per request in flight. @default 512
 */
export const MAX_INFER_STREAMS_PER_PEER = 512

/**
 * Requests of one peer this agent serves at once (one per stream); more are answered BUSY at
 * once (the router tries another host) and counted. Admission answers long before this for
 * honest routers: a host's slots plus its queues. @default 256
 */
export const MAX_INFER_REQUESTS_PER_PEER = 256

/**
 * Bytes of requests one peer may have on their way to this agent at once (request frames begun
 * and not yet complete, over all its streams); a stream that would pass it is reset and
 * counted. A request is a few KB; this lets 8 requests of the largest size (8 MiB) arrive at
 * once and stops 512 streams x 8 MiB partial frames from holding 4 GiB. @default 64 MiB
 */
export const MAX_REQUEST_BYTES_IN_FLIGHT_PER_PEER = 64 * 1024 * 1024

/**
 * A request frame must arrive whole within this long: from a new stream's opening, or from the
 * first byte of the next request on a kept stream. A stream that sends nothing, or a part of a
 * frame and then nothing, is closed and its bytes freed. @default 10000 ms
 */
export const REQUEST_READ_TIMEOUT_MS = 10_000

/**
 * A kept stream waiting for its next request is closed after this long without one: the
 * requester closes its idle streams after INFER_STREAM_IDLE_MS. @default 70000 ms
 */
export const KEPT_STREAM_IDLE_READ_MS = INFER_STREAM_IDLE_MS + 10_000

/**
 * A serving agent whose requester reads nothing for this long (its stream's window stays
 * closed) ends the answer with an error and frees the runner's slot. @default 30000 ms
 */
export const WRITE_STALL_MS = 30_000

/**
 * Shortest keepalive period a requester may ask for (see InferRequest.keepaliveMs): a smaller
 * one is raised to this. @default 100 ms
 */
export const MIN_KEEPALIVE_MS = 100

/** Default libp2p TCP port (`p2p.listen`: /ip4/0.0.0.0/tcp/DEFAULT_P2P_PORT). @default 4778 */
export const DEFAULT_P2P_PORT = 4778

/**
 * A peer that sends nothing (no head, no keepalive) this long after a request went to it is
 * taken for silent and the request fails over (`limits.headTimeoutMs`; InferTimeouts.headMs).
 * @default 10000 ms
 */
export const PEER_HEAD_TIMEOUT_MS = 10_000

/**
 * Once a peer answers, the longest silence between its frames, keepalives included
 * (`limits.frameGapMs`; InferTimeouts.gapMs). @default 10000 ms
 */
export const PEER_FRAME_GAP_MS = 10_000

/**
 * Protocol of the llama.cpp RPC tunnel (rpc-tunnel.ts): a coordinator's llama-server reaches a
 * member's loopback-only `rpc-server` through a libp2p stream, never a bare TCP port.
 */
export const RPC_TUNNEL_PROTOCOL = '/llmesh/rpc/1'

/**
 * Tunnel streams one peer may hold open to this agent at once, over all its connections; more
 * are answered BUSY and closed, and counted. A llama-server holds a connection or two per
 * rpc-server it uses, so this is far above any honest coordinator. @default 16
 */
export const MAX_RPC_TUNNEL_STREAMS_PER_PEER = 16

/**
 * Largest tunnel header (the request `{ model }`, or the reply), bytes, without its length
 * prefix; a longer one is refused before it is read. @default 4096 bytes
 */
export const MAX_RPC_TUNNEL_HEADER_BYTES = 4096

/**
 * A tunnel stream's header must arrive whole within this long of the stream's opening; a
 * stream that sends nothing, or a part of a header, is refused and closed. @default 10000 ms
 */
export const RPC_TUNNEL_HEADER_TIMEOUT_MS = 10_000

/**
 * Longest wait for the agent to name (and, when needed, start) the rpc-server a tunnel stream
 * asks for; longer, and the stream is refused. Starting an rpc-server takes about a second
 * (device probing); it loads nothing until the coordinator sends tensors. @default 30000 ms
 */
export const RPC_TUNNEL_RESOLVE_TIMEOUT_MS = 30_000

/** Longest TCP connect from a member's agent to its loopback rpc-server. @default 5000 ms */
export const RPC_TUNNEL_CONNECT_TIMEOUT_MS = 5000

/** Longest wait to open a tunnel stream to a member (a dial included). @default 10000 ms */
export const RPC_TUNNEL_OPEN_TIMEOUT_MS = 10_000

/**
 * Longest wait of a coordinator for the member's reply header: the member's own bounds (resolve
 * and connect) and a margin for the round trip. @default 40000 ms
 */
export const RPC_TUNNEL_REPLY_TIMEOUT_MS = RPC_TUNNEL_RESOLVE_TIMEOUT_MS + RPC_TUNNEL_CONNECT_TIMEOUT_MS + 5000
