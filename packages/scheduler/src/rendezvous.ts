import { unitHash } from './hash.js'

/**
 * Rendezvous (highest-random-weight) hashing: every router computes, for each candidate host,
 * a pseudo-random weight from (key, host) alone and takes the highest. Routers that see the
 * same candidates make the same choice without talking to each other, and when a host joins
 * or leaves only the keys whose top host it is (or becomes) move: about 1/n of them.
 *
 * Weighted by capacity (Schindelhauer and Schomaker's logarithmic method): score = -w / ln(u),
 * u = unitHash(key, host) in (0, 1). A host with twice the slots owns twice the keys. Use a
 * weight every router agrees on (slots from the converged node records, not live load).
 *
 * Returns the candidates best first; equal scores (practically never) fall back to peer-id
 * order so that the result is the same everywhere.
 */
export function rendezvousOrder<T extends { peerId: string }> (key: string, candidates: readonly T[], weight: (c: T) => number): T[] {
  const scored = candidates.map((c) => {
    const w = Math.max(weight(c), Number.MIN_VALUE)
    return { c, score: -w / Math.log(unitHash(`${key}\n${c.peerId}`)) }
  })
  scored.sort((a, b) => b.score - a.score || (a.c.peerId < b.c.peerId ? -1 : a.c.peerId > b.c.peerId ? 1 : 0))
  return scored.map((s) => s.c)
}
