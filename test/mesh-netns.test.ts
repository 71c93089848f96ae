/**
 * Three agents on three hosts (network namespaces joined by a bridge): discovery by mDNS
 * alone, convergence, failure detection on a cut link, rejoin after heal, a short flap that
 * evicts nobody, kill -9 and restart with the same peer id and a warm snapshot, graceful leave.
 * Each scenario runs once; the network and every process are removed by id even on failure.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  TestNetwork, cleanupStaleTestNetworks, netnsAvailable, netnsUnavailableReason, runLlmesh, startAgentProcess, waitFor,
  type AgentProcess
} from '@llmesh/fixtures'

interface ViewNode { peerId: string, name: string, state: string, connected: boolean, heartbeatAgeMs: number | null }
interface View { self: string, nodes: ViewNode[] }

const HOSTS = 3
let net: TestNetwork
let dir: string
const agents: Array<AgentProcess | undefined> = []

async function startHost (i: number): Promise<AgentProcess> {
  const host = net.hosts[i]!
  const agent = await startAgentProcess({
    name: `host${i}`,
    dataDir: join(dir, `host${i}`),
    netns: host.name,
    // mDNS only: no bootstrap address anywhere; off loopback, so one cluster key for all
    args: ['--listen', `/ip4/${host.ip}/tcp/4778`, '--api-port', '0', '--cluster', 'netns-test', '--cluster-key', join(dir, 'cluster.key'), '--log-level', 'warn']
  })
  agents[i] = agent
  return agent
}

/** Asks host i's agent for its view, from inside host i's namespace. */
async function viewOf (i: number): Promise<View> {
  const agent = agents[i]
  if (agent == null) throw new Error(`host ${i} has no agent`)
  const script = `fetch(${JSON.stringify(`${agent.info.api}/mesh/view`)}).then(r => r.text()).then(t => process.stdout.write(t), e => { console.error(e.message); process.exit(1) })`
  const res = await net.run(i, process.execPath, ['-e', script], 5000)
  if (res.code !== 0) throw new Error(`view of host ${i} failed: ${res.stderr}`)
  return JSON.parse(res.stdout) as View
}

function stateOf (view: View, peerId: string): string | undefined {
  return view.nodes.find((n) => n.peerId === peerId)?.state
}

/** Every running agent sees every listed peer alive and connected. */
async function allAgree (hosts: number[]): Promise<boolean> {
  const ids = hosts.map((i) => agents[i]!.info.peerId)
  for (const i of hosts) {
    const view = await viewOf(i)
    for (const id of ids) {
      const n = view.nodes.find((x) => x.peerId === id)
      if (n == null || n.state !== 'alive' || !n.connected) return false
    }
  }
  return true
}

describe.skipIf(!netnsAvailable())(`mesh across ${HOSTS} hosts in network namespaces ${netnsAvailable() ? '' : `(skipped: ${netnsUnavailableReason()})`}`, () => {
  beforeAll(async () => {
    await cleanupStaleTestNetworks()
    net = await TestNetwork.create({ hosts: HOSTS })
    dir = await mkdtemp(join(tmpdir(), 'llmesh-netns-'))
    await runLlmesh(['keygen', '--out', join(dir, 'cluster.key')])
  }, 60_000)

  afterAll(async () => {
    await Promise.all(agents.map(async (a) => { await a?.kill() }))
    await net?.destroy()
    await rm(dir, { recursive: true, force: true })
  }, 60_000)

  it('discovers every host by mDNS alone and converges', async () => {
    await Promise.all([0, 1, 2].map(startHost))
    await waitFor('all three views to agree', () => allAgree([0, 1, 2]), 30_000, 100)
    for (const i of [0, 1, 2]) expect((await viewOf(i)).nodes).toHaveLength(HOSTS)
  }, 60_000)

  it('marks a host whose link is cut suspect, then dead, and takes it back after heal', async () => {
    const cutId = agents[2]!.info.peerId
    await net.cut(2)
    const seen = new Set<string>()
    await waitFor('host 2 dead on hosts 0 and 1', async () => {
      const states = await Promise.all([0, 1].map(async (i) => stateOf(await viewOf(i), cutId)))
      for (const s of states) if (s != null) seen.add(s)
      return states.every((s) => s === 'dead')
    }, 30_000, 100)
    expect(seen.has('suspect')).toBe(true)
    await net.heal(2)
    await waitFor('views to agree after heal', () => allAgree([0, 1, 2]), 30_000, 100)
  }, 60_000)

  it('evicts nobody over a 1 s link flap', async () => {
    const flapId = agents[1]!.info.peerId
    await net.cut(1)
    const seen = new Set<string>()
    const watch = (async () => {
      const until = Date.now() + 6000
      while (Date.now() < until) {
        for (const i of [0, 2]) {
          const s = stateOf(await viewOf(i), flapId)
          if (s != null) seen.add(s)
        }
      }
    })()
    await new Promise((resolve) => setTimeout(resolve, 1000))
    await net.heal(1)
    await watch
    expect(seen.has('dead')).toBe(false)
    await waitFor('views to agree after the flap', () => allAgree([0, 1, 2]), 30_000, 100)
  }, 60_000)

  it('restarts a kill -9ed host with the same peer id and its snapshot, then rejoins', async () => {
    const before = agents[1]!.info.peerId
    // the snapshot is written every 5 s: make sure one holds all three hosts
    await waitFor('a snapshot on disk', async () => (await readFile(join(dir, 'host1', 'cluster.snapshot')).catch(() => undefined)) != null, 15_000)
    await new Promise((resolve) => setTimeout(resolve, 5500))
    await agents[1]!.kill()
    await net.cut(1) // isolated: whatever it knows at start comes from its snapshot
    const restarted = await startHost(1)
    expect(restarted.info.peerId).toBe(before)
    const warm = await viewOf(1)
    expect(warm.nodes.map((n) => n.peerId).sort()).toEqual(agents.map((a) => a!.info.peerId).sort())
    await net.heal(1)
    await waitFor('views to agree after the restart', () => allAgree([0, 1, 2]), 30_000, 100)
  }, 90_000)

  it('sees a gracefully stopped host as left at once', async () => {
    const goneId = agents[0]!.info.peerId
    await agents[0]!.stop()
    agents[0] = undefined
    for (const i of [1, 2]) {
      await waitFor(`host ${i} to see host 0 as left`, async () => stateOf(await viewOf(i), goneId) === 'left', 10_000, 100)
    }
  }, 30_000)
})
