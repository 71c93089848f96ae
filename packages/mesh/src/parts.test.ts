/**
 * The mesh's parts over the in-memory transport, on a fake clock: heartbeats and membership,
 * sync repair, redial with backoff, pruning. No sockets, no sleeps, no real timers; what only
 * TCP shows stays in mesh.test.ts and test/mesh-*.test.ts.
 */
import { createHash } from 'node:crypto'
import { afterEach, describe, expect, it } from 'vitest'
import { pino } from 'pino'
import type { UnsignedNodeRecord } from '@llmesh/protocol'
import { ClusterDoc, type RecordVerifier } from '@llmesh/state'
import { FakeClock, mulberry32 } from '@llmesh/testkit'
import { HEARTBEAT_INTERVAL_MS, NUDGE_MS, URGENT_NUDGE_GAP_MS, URGENT_NUDGE_MS, RECONNECT_DIAL_TIMEOUT_MS, RECONNECT_INTERVAL_MS, RECONNECT_MAX_BACKOFF_MS, RECONNECT_TICK_MS } from './constants.js'
import { redialDelay } from './dialer.js'
import { LAN_TIMINGS, type MembershipTimings } from './membership.js'
import { MemoryHub } from './memory-transport.js'
import { Mesh } from './mesh.js'
import { DocSync } from './doc-sync.js'
import { newMeshStats } from './stats.js'
import { InferRefusals, type InferRefusal } from './infer-stream.js'

const logger = pino({ level: 'silent' })
const sig = (peerId: string, content: Uint8Array): string => createHash('sha256').update(peerId).update(content).digest('base64url')
const verifier: RecordVerifier = { verify: (record, content) => record.sig === sig(record.peerId, content) ? undefined : 'bad-signature' }

function record (peerId: string, updatedAt: number, models: string[] = []): UnsignedNodeRecord {
  return {
    peerId,
    name: peerId,
    version: '0.1.0',
    protocol: 1,
    addrs: [`/memory/${peerId}`],
    api: '127.0.0.1:1',
    hardware: { cpus: 2, memBytes: 1, platform: 'linux', arch: 'x64' },
    models: models.map((name) => ({ name, sizeBytes: 1, digest: 'd', format: 'gguf' as const })),
    runners: [],
    startedAt: 1,
    updatedAt
  }
}

interface Node { id: string, mesh: Mesh, doc: ClusterDoc }

/** Nodes on one hub and one fake clock, each a whole Mesh over its memory transport. */
function cluster (ids: string[], timings: MembershipTimings = LAN_TIMINGS, seed = 1): { clock: FakeClock, hub: MemoryHub, nodes: Record<string, Node>, start: () => Promise<void> } {
  const clock = new FakeClock()
  const hub = new MemoryHub()
  const random = mulberry32(seed)
  const nodes: Record<string, Node> = {}
  for (const id of ids) {
    const doc = new ClusterDoc(id, undefined, { verifier, signer: { sign: (content) => sig(id, content) }, now: clock.now })
    const mesh = new Mesh({
      clusterId: 'unit',
      doc,
      logger,
      incarnation: 1,
      metrics: () => ({ slotsBusy: 0, slotsTotal: 0, queueDepth: 0, tokensPerSec: 0, latencyMs: 0, successRate: 1, claims: {} }),
      timings,
      clock,
      random,
      transport: hub.transport(id),
      refreshSelf: () => { doc.setSelf(record(id, clock.now()), true) }
    })
    nodes[id] = { id, mesh, doc }
  }
  running.push(...Object.values(nodes))
  return {
    clock,
    hub,
    nodes,
    start: async () => {
      for (const n of Object.values(nodes)) {
        n.doc.setSelf(record(n.id, clock.now()))
        await n.mesh.start()
      }
    }
  }
}

const running: Node[] = []
afterEach(async () => {
  for (const n of running.splice(0)) await n.mesh.stop()
})

const stateOf = (n: Node, peer: string): string | undefined => n.mesh.membership.get(peer)?.state

describe('Heartbeats and Membership over the memory transport', () => {
  it('moves a peer alive -> suspect -> dead as its link goes silent, and back to alive once it heals', async () => {
    const { clock, hub, nodes: { a, b }, start } = cluster(['a', 'b'])
    await start()
    await hub.connect('a', 'b')
    await clock.advance(2 * HEARTBEAT_INTERVAL_MS)
    expect(stateOf(a!, 'b')).toBe('alive')
    expect(stateOf(b!, 'a')).toBe('alive')
    expect(a!.mesh.stats.heartbeatsReceived).toBeGreaterThan(0)

    // a cut link: the connection stays open (TCP does not notice), nothing gets through
    hub.drop('a', 'b')
    await clock.advance(LAN_TIMINGS.suspectAfterMs + HEARTBEAT_INTERVAL_MS)
    expect(stateOf(a!, 'b')).toBe('suspect')
    expect(a!.mesh.membership.isUsable('b')).toBe(true)
    await clock.advance(LAN_TIMINGS.deadAfterMs - LAN_TIMINGS.suspectAfterMs)
    expect(stateOf(a!, 'b')).toBe('dead')
    expect(stateOf(b!, 'a')).toBe('dead')
    expect(a!.mesh.membership.isUsable('b')).toBe(false)

    // the probe of a dead peer dials beside the silent connection; once the link heals, heartbeats flow again
    hub.heal('a', 'b')
    await clock.advance(RECONNECT_INTERVAL_MS + RECONNECT_DIAL_TIMEOUT_MS + 2 * HEARTBEAT_INTERVAL_MS)
    expect(stateOf(a!, 'b')).toBe('alive')
    expect(stateOf(b!, 'a')).toBe('alive')
    expect(a!.mesh.connectedPeers()).toEqual(['b'])
  })

  it('sees a graceful leave as left at once, and never redials a peer that left', async () => {
    const { clock, hub, nodes: { a, b }, start } = cluster(['a', 'b'])
    await start()
    await hub.connect('a', 'b')
    await clock.advance(2 * HEARTBEAT_INTERVAL_MS)
    await b!.mesh.leave()
    await clock.advance(0)
    expect(stateOf(a!, 'b')).toBe('left')
    await b!.mesh.stop()
    const dials = hub.dials.length
    await clock.advance(10 * RECONNECT_INTERVAL_MS)
    expect(hub.dials.slice(dials).filter((d) => d.from === 'a' && d.to === 'b')).toEqual([])
  })

  it('stretches the heartbeat period with the number of peers and announces it', async () => {
    const ids = Array.from({ length: 12 }, (_, i) => `p${String(i).padStart(2, '0')}`)
    const { clock, hub, nodes, start } = cluster(ids)
    await start()
    for (const id of ids.slice(1)) await hub.connect(ids[0]!, id)
    await clock.advance(HEARTBEAT_INTERVAL_MS)
    // 11 peers at MAX_HEARTBEATS_PER_SEC (20) a second: 550 ms, not the 500 ms base
    expect(nodes[ids[0]!]!.mesh.heartbeatIntervalMs()).toBe(550)
    expect(nodes[ids[1]!]!.mesh.membership.get(ids[0]!)?.scale).toBeCloseTo(550 / HEARTBEAT_INTERVAL_MS)
  })
})

describe('nudged heartbeats', () => {
  it('sends a nudge after NUDGE_MS, an urgent one after URGENT_NUDGE_MS, urgent ones at most one per URGENT_NUDGE_GAP_MS', async () => {
    const { clock, hub, nodes: { a, b }, start } = cluster(['a', 'b'])
    await start()
    await hub.connect('a', 'b')
    await clock.advance(HEARTBEAT_INTERVAL_MS / 10)
    const heard = (): number => b!.mesh.stats.heartbeatsReceived
    const base = heard()
    a!.mesh.nudge()
    await clock.advance(NUDGE_MS - 1)
    expect(heard()).toBe(base)
    await clock.advance(1)
    expect(heard()).toBe(base + 1)
    // an urgent change overtakes a pending nudge, and carries its change too
    a!.mesh.nudge()
    a!.mesh.nudge(true)
    await clock.advance(URGENT_NUDGE_MS)
    expect(heard()).toBe(base + 2)
    // a second urgent change within the gap waits for it
    a!.mesh.nudge(true)
    await clock.advance(URGENT_NUDGE_MS)
    expect(heard()).toBe(base + 2)
    await clock.advance(URGENT_NUDGE_GAP_MS)
    expect(heard()).toBe(base + 3)
    // and the nudge the first urgent one overtook is not sent again
    await clock.advance(NUDGE_MS)
    expect(heard()).toBe(base + 3)
  })
})

describe('DocSync over the memory transport', () => {
  it('repairs a lost gossip update by sync as soon as a later one cannot be placed', async () => {
    const { clock, hub, nodes: { a, b }, start } = cluster(['a', 'b'])
    await start()
    await hub.connect('a', 'b')
    await clock.advance(HEARTBEAT_INTERVAL_MS)
    expect(b!.doc.get('a')).toBeDefined()
    const syncsBefore = b!.mesh.stats.syncs

    let lose = true
    hub.gossipFilter = (from) => {
      if (from !== 'a' || !lose) return true
      lose = false
      return false
    }
    a!.doc.setSelf(record('a', clock.now(), ['one']))
    await clock.advance(0)
    expect(b!.doc.get('a')?.models).toEqual([])

    // the next delta comes after a gap Yjs notices: b parks it and syncs with a
    a!.doc.setSelf(record('a', clock.now(), ['one', 'two']))
    await clock.advance(0)
    expect(b!.doc.get('a')?.models.map((m) => m.name)).toEqual(['one', 'two'])
    expect(b!.doc.hasPending()).toBe(false)
    expect(b!.mesh.stats.syncs).toBe(syncsBefore + 1)
  })

  it('repairs a lost last update at the next anti-entropy sync', async () => {
    const { clock, hub, nodes: { a, b }, start } = cluster(['a', 'b'])
    await start()
    await hub.connect('a', 'b')
    await clock.advance(HEARTBEAT_INTERVAL_MS)
    hub.gossipFilter = () => false
    a!.doc.setSelf(record('a', clock.now(), ['lost']))
    await clock.advance(1000)
    expect(b!.doc.get('a')?.models).toEqual([])
    await clock.advance(15_000)
    expect(b!.doc.get('a')?.models.map((m) => m.name)).toEqual(['lost'])
  })

  it('converges three documents whatever gossip is lost, from a seeded random choice', async () => {
    for (const seed of [1, 2, 3]) {
      const { clock, hub, nodes, start } = cluster(['a', 'b', 'c'], LAN_TIMINGS, seed)
      await start()
      await hub.connect('a', 'b')
      await hub.connect('b', 'c')
      await hub.connect('a', 'c')
      const random = mulberry32(seed)
      hub.gossipFilter = () => random() > 0.5
      for (let i = 0; i < 6; i++) {
        const id = ['a', 'b', 'c'][Math.floor(random() * 3)]!
        nodes[id]!.doc.setSelf(record(id, clock.now(), [`m${i}`]))
        await clock.advance(100)
      }
      await clock.advance(3 * 15_000)
      const views = Object.values(nodes).map((n) => JSON.stringify(n.doc.records().sort((x, y) => x.peerId < y.peerId ? -1 : 1)))
      expect(new Set(views).size, `seed ${seed}`).toBe(1)
      for (const n of Object.values(nodes)) await n.mesh.stop()
    }
  })
})

describe('a part alone', () => {
  it('DocSync needs only a transport, a clock and a logger: two documents converge on connect', async () => {
    const clock = new FakeClock()
    const hub = new MemoryHub()
    const parts = ['a', 'b'].map((id) => {
      const doc = new ClusterDoc(id, undefined, { verifier, signer: { sign: (content) => sig(id, content) }, now: clock.now })
      doc.setSelf(record(id, clock.now()))
      const transport = hub.transport(id)
      const stats = newMeshStats(Object.fromEntries(InferRefusals.map((r) => [r, 0])) as Record<InferRefusal, number>)
      return { doc, transport, stats, sync: new DocSync(transport, clock, logger, { clusterId: 'unit', doc, stats }) }
    })
    for (const p of parts) {
      await p.transport.start()
      await p.sync.start()
    }
    await hub.connect('a', 'b')
    await clock.advance(0)
    for (const p of parts) expect(p.doc.records().map((r) => r.peerId).sort()).toEqual(['a', 'b'])
    expect(parts[0]!.stats.syncs + parts[1]!.stats.syncs).toBe(2)
    for (const p of parts) {
      p.sync.stop()
      await p.transport.stop()
    }
    expect(clock.pending).toBe(0)
  })
})

describe('Dialer over the memory transport', () => {
  it('uses the one backoff (kit\'s), capped, without jitter, with the redial constants', () => {
    expect(redialDelay(1)).toBe(Math.min(RECONNECT_MAX_BACKOFF_MS, RECONNECT_INTERVAL_MS))
    for (let n = 1; n < 40; n++) {
      expect(redialDelay(n)).toBe(Math.min(RECONNECT_MAX_BACKOFF_MS, RECONNECT_INTERVAL_MS * 2 ** (n - 1)))
    }
  })

  it('redials a dropped peer from its record, spaced by the backoff, until the link heals', async () => {
    const { clock, hub, nodes: { a }, start } = cluster(['a', 'b'])
    await start()
    await hub.connect('a', 'b')
    await clock.advance(2 * HEARTBEAT_INTERVAL_MS)
    hub.drop('a', 'b')
    hub.disconnect('a', 'b')
    expect(a!.mesh.connectedPeers()).toEqual([])

    // note when a dials b
    const attempts: number[] = []
    let seen = hub.dials.length
    for (let t = 0; t < 6000; t += RECONNECT_TICK_MS) {
      await clock.advance(RECONNECT_TICK_MS)
      for (const d of hub.dials.slice(seen)) if (d.from === 'a' && d.to === 'b') attempts.push(clock.now())
      seen = hub.dials.length
    }
    expect(attempts.length).toBeGreaterThanOrEqual(4)
    // each attempt hangs for its timeout, and the next waits for the backoff counted from its start
    const gaps = attempts.slice(1).map((t, i) => t - attempts[i]!)
    for (const [i, gap] of gaps.entries()) expect(gap).toBeGreaterThanOrEqual(Math.max(redialDelay(i + 1), RECONNECT_DIAL_TIMEOUT_MS))
    expect(Math.max(...gaps)).toBeLessThanOrEqual(RECONNECT_DIAL_TIMEOUT_MS + RECONNECT_TICK_MS)

    hub.heal('a', 'b')
    await clock.advance(RECONNECT_DIAL_TIMEOUT_MS + 2 * RECONNECT_TICK_MS)
    expect(a!.mesh.connectedPeers()).toEqual(['b'])
    await clock.advance(2 * HEARTBEAT_INTERVAL_MS)
    expect(stateOf(a!, 'b')).toBe('alive')
  })

  it('spaces redials of a peer that refuses by the backoff, counted from each attempt\'s start', async () => {
    const { clock, hub, nodes: { a }, start } = cluster(['a', 'b'])
    await start()
    await hub.connect('a', 'b')
    await clock.advance(2 * HEARTBEAT_INTERVAL_MS)
    hub.drop('a', 'b', { refuse: true })
    hub.disconnect('a', 'b')
    const attempts: number[] = []
    let seen = hub.dials.length
    for (let t = 0; t < 8000; t += RECONNECT_TICK_MS) {
      await clock.advance(RECONNECT_TICK_MS)
      for (const d of hub.dials.slice(seen)) if (d.from === 'a' && d.to === 'b') attempts.push(clock.now())
      seen = hub.dials.length
    }
    const gaps = attempts.slice(1).map((t, i) => t - attempts[i]!)
    expect(gaps.length).toBeGreaterThanOrEqual(6)
    // the n-th retry waits redialDelay(n), rounded up to the redial pass's tick
    for (const [i, gap] of gaps.entries()) expect(gap).toBe(Math.ceil(redialDelay(i + 1) / RECONNECT_TICK_MS) * RECONNECT_TICK_MS)
    expect(a!.mesh.connectedPeers()).toEqual([])
    hub.heal('a', 'b')
    await clock.advance(RECONNECT_MAX_BACKOFF_MS + RECONNECT_TICK_MS)
    expect(a!.mesh.connectedPeers()).toEqual(['b'])
  })

  it('dials a peer found by discovery, the larger id only after the tie-break wait', async () => {
    const { clock, hub, nodes: { a, b }, start } = cluster(['a', 'b'])
    await start()
    const ta = (a!.mesh as unknown as { transport: { discover: (p: string, addrs: string[]) => void } }).transport
    const tb = (b!.mesh as unknown as { transport: { discover: (p: string, addrs: string[]) => void } }).transport
    tb.discover('a', ['/memory/a'])
    await clock.advance(1000)
    expect(b!.mesh.connectedPeers()).toEqual([])
    ta.discover('b', ['/memory/b'])
    await clock.advance(0)
    expect(a!.mesh.connectedPeers()).toEqual(['b'])
    await clock.advance(1000)
    // b's delayed dial found the connection a made: one connection, not two
    expect(a!.mesh.connectionCount()).toBe(1)
    expect(hub.dials.filter((d) => d.from === 'b')).toEqual([])
  })
})

describe('Pruner over the memory transport', () => {
  const timings: MembershipTimings = { suspectAfterMs: 1500, deadAfterMs: 4000, pruneAfterMs: 60_000 }

  it('prunes a long-dead host from every document, once, and keeps the live ones', async () => {
    const { clock, hub, nodes: { a, b, c }, start } = cluster(['a', 'b', 'c'], timings)
    await start()
    await hub.connect('a', 'b')
    await hub.connect('a', 'c')
    await hub.connect('b', 'c')
    await clock.advance(2 * HEARTBEAT_INTERVAL_MS)
    for (const n of [a!, b!]) expect(n.doc.records().map((r) => r.peerId).sort()).toEqual(['a', 'b', 'c'])

    // c crashes: no goodbye
    await c!.mesh.stop()
    await clock.advance(timings.deadAfterMs + HEARTBEAT_INTERVAL_MS)
    expect(stateOf(a!, 'c')).toBe('dead')
    // dead but not long enough: kept
    expect(a!.doc.get('c')).toBeDefined()

    // one prune pass (every pruneAfterMs / 4) after c's record and c's last heartbeat are pruneAfterMs old
    await clock.advance(timings.pruneAfterMs + timings.pruneAfterMs / 4)
    for (const n of [a!, b!]) {
      expect(n.doc.get('c'), n.id).toBeUndefined()
      expect(n.doc.keys().sort(), n.id).toEqual(['a', 'b'])
      expect(n.mesh.members().map((m) => m.peerId), n.id).toEqual([n.id === 'a' ? 'b' : 'a'])
    }
    // the live hosts refreshed their records and were never pruned
    expect(a!.doc.get('b')?.updatedAt).toBeGreaterThan(clock.now() - timings.pruneAfterMs)
    expect(b!.doc.rejected.get('foreign-delete') ?? 0).toBe(0)
  })
})
