/** One runner of this host as eviction sees it. */
export interface LocalRunnerUse {
  runnerId: string
  model: string
  /** memory it gives back when stopped, bytes */
  footprintBytes: number
  /** when it last served a request, ms (any clock, the same for all runners) */
  lastUsedAt: number
  /** requests it is serving or holding in its queue now */
  inflight: number
  /** never evicted (pins, a `config` placement: see isPinned) */
  pinned: boolean
}

export type EvictionChoice = { ok: true, evict: string[] } | { ok: false, shortBytes: number }

/**
 * The runners to stop so that `needBytes` fit beside `freeBytes`: idle runners before serving
 * ones (a serving runner is drained first by the caller, bounded by evictDrainMs, and its
 * clients wait for that), within each the fewest runners that make room, and among sets of
 * that size the least recently used. Pinned runners never. Fails with the bytes still missing
 * when evicting every unpinned runner would not make room.
 */
export function chooseEvictions (runners: readonly LocalRunnerUse[], needBytes: number, freeBytes: number): EvictionChoice {
  const short = needBytes - freeBytes
  if (short <= 0) return { ok: true, evict: [] }
  const lru = (a: LocalRunnerUse, b: LocalRunnerUse): number => a.lastUsedAt - b.lastUsedAt || (a.runnerId < b.runnerId ? -1 : a.runnerId > b.runnerId ? 1 : 0)
  const open = runners.filter((r) => !r.pinned)
  const idle = open.filter((r) => r.inflight <= 0).sort(lru)
  const serving = open.filter((r) => r.inflight > 0).sort(lru)
  const total = (rs: readonly LocalRunnerUse[]): number => rs.reduce((n, r) => n + Math.max(0, r.footprintBytes), 0)
  const all = total(idle) + total(serving)
  if (all < short) return { ok: false, shortBytes: short - all }
  const fromIdle = fewest(idle, short)
  if (fromIdle != null) return { ok: true, evict: fromIdle.map((r) => r.runnerId) }
  // idle runners cannot make room alone: as few serving ones as needed beside all idle ones,
  // then only the idle ones still needed beside those
  const fromServing = fewest(serving, short - total(idle))!
  const idleNeeded = fewest(idle, short - total(fromServing)) ?? []
  return { ok: true, evict: [...idleNeeded, ...fromServing].map((r) => r.runnerId) }
}

/**
 * The smallest set of `ordered` (best victims first) whose bytes reach `need`, and of the sets
 * that small the one earliest in that order; undefined when all of them do not reach it.
 */
function fewest (ordered: readonly LocalRunnerUse[], need: number): LocalRunnerUse[] | undefined {
  if (need <= 0) return []
  const size = (r: LocalRunnerUse): number => Math.max(0, r.footprintBytes)
  for (let k = 1; k <= ordered.length; k++) {
    const chosen: LocalRunnerUse[] = []
    let sum = 0
    for (let i = 0; i < ordered.length && chosen.length < k; i++) {
      // take ordered[i] if the set can still be completed to reach `need` with the largest of the rest
      const left = k - chosen.length - 1
      const rest = ordered.slice(i + 1).map(size).sort((a, b) => b - a).slice(0, left).reduce((n, s) => n + s, 0)
      if (sum + size(ordered[i]!) + rest >= need) {
        chosen.push(ordered[i]!)
        sum += size(ordered[i]!)
      }
    }
    if (chosen.length === k && sum >= need) return chosen
  }
  return undefined
}
