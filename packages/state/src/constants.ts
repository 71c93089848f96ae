/**
 * Hard bounds on the cluster document. A remote update that would carry the document past one
 * of them is refused whole (counted by reason), so no peer can grow every agent's memory or
 * make the join sync of a new host too large to finish. Every agent applies the same bounds,
 * and an owner never writes a record past them, so honest peers never hold what another refuses.
 *
 * Measured: a 20-host cluster (each host 2 GPUs, 6 models with full GGUF metadata, 3 runners,
 * 3 addresses; about 4 KiB of JSON per record), after 100 refreshes of every record, encodes to
 * 71 KB (80 KB as the bounds count it): MAX_DOC_BYTES leaves about 100 times that.
 */

/**
 * Most entries in all sections together (`nodes`, `placements`, `pins`): 1024 hosts, each with
 * an entry in every section. An update adding entries past it is refused.
 * @default 3072 entries
 */
export const MAX_ENTRIES = 3 * 1024

/**
 * Largest value of one entry, as JSON text: about 500 models with full GGUF metadata. An owner's
 * own record past it is not written (it would be refused everywhere).
 * @default 256 KiB
 */
export const MAX_RECORD_BYTES = 256 * 1024

/**
 * Largest document: the JSON of every live entry of every section plus PER_CLIENT_BYTES for
 * every Yjs client id it has seen. Kept well under the sync stream's frame (16 MiB), which must carry the whole
 * document to a host that joins. An update that would grow the document past it is refused;
 * one that shrinks or keeps it passes, so a document over the bound can still heal.
 * @default 8 MiB
 */
export const MAX_DOC_BYTES = 8 * 1024 * 1024

/**
 * What one Yjs client id costs the document whatever it wrote (state vector, struct and delete
 * set entries; Yjs never forgets a client). Every agent start is a new client, so honest churn
 * adds a few a day; a flood of fresh client ids each writing a byte hits MAX_DOC_BYTES after
 * MAX_DOC_BYTES / PER_CLIENT_BYTES = 131,072 of them instead of growing without end.
 * @default 64 bytes
 */
export const PER_CLIENT_BYTES = 64

/**
 * Largest backlog of updates Yjs may park while waiting for a missing predecessor (pending
 * structs and deletes). Past it the backlog is dropped and counted: a legitimate gap is
 * repaired by the next state-vector sync, a peer sending only gaps gains nothing.
 * @default 1 MiB
 */
export const MAX_PENDING_BYTES = 1024 * 1024

/**
 * Shortest time between two rewrites of this peer's own entry after a foreign write or delete:
 * a second agent running with the same key (a copied data dir) would otherwise rewrite back and
 * forth at gossip speed. The first rewrite is immediate.
 * @default 1000 ms
 */
export const SELF_REWRITE_MIN_INTERVAL_MS = 1000
