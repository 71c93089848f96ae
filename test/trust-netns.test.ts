/**
 * The cluster key across hosts (network namespaces joined by a bridge): hosts holding the key
 * find each other by mDNS and converge; a host with another key, dialling them by address all
 * the while, never gets a connection nor a place in their views; a libp2p peer without the key,
 * or with a wrong one, cannot complete a connection at all; `llmesh invite` on one host and
 * `llmesh up --join TOKEN` on a fresh one bring it into the cluster.
 * The network and every process are removed by id, even on failure.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  TestNetwork, cleanupStaleTestNetworks, netnsAvailable, netnsUnavailableReason, packageDir, runLlmesh, startAgentProcess, waitFor,
  type AgentProcess
} from '@llmesh/fixtures'

interface View { self: string, trust: { mode: string, keyId?: string }, nodes: Array<{ peerId: string, state: string, connected: boolean }> }

const HOSTS = 4
let net: TestNetwork
let dir: string
const agents: Array<AgentProcess | undefined> = []

async function startHost (i: number, extra: string[]): Promise<AgentProcess> {
  const host = net.hosts[i]!
  const agent = await startAgentProcess({
    name: `host${i}`,
    dataDir: join(dir, `host${i}`),
    netns: host.name,
    args: ['--listen', `/ip4/${host.ip}/tcp/4778`, '--api-port', '0', '--log-level', 'warn', ...extra]
  })
  agents[i] = agent
  return agent
}

/** Runs a small ESM script with node inside host i's namespace; returns its stdout. */
async function runIn (i: number, script: string, timeoutMs = 10_000): Promise<string> {
  const res = await net.run(i, process.execPath, ['--input-type=module', '-e', script], timeoutMs)
  if (res.code !== 0) throw new Error(`script in host ${i} failed (${res.code}): ${res.stderr}`)
  return res.stdout
}

async function viewOf (i: number): Promise<View> {
  const url = `${agents[i]!.info.api}/mesh/view`
  return JSON.parse(await runIn(i, `process.stdout.write(await (await fetch(${JSON.stringify(url)})).text())`, 5000)) as View
}

async function sees (i: number, j: number): Promise<boolean> {
  const n = (await viewOf(i)).nodes.find((x) => x.peerId === agents[j]!.info.peerId)
  return n?.state === 'alive' && n.connected
}

/**
 * From inside host i: a libp2p peer built from libp2p's own modules dials `addr`, with the
 * cluster key in `keyFile` (or none), and prints 'connected' or the error.
 */
async function strangerDial (i: number, addr: string, keyFile?: string): Promise<string> {
  const fixtures = join(packageDir('@llmesh/fixtures', 'dist'), 'dist', 'index.js')
  const polyfill = join(packageDir('@llmesh/kit', 'dist'), 'dist', 'polyfill.js')
  const script = `
    await import(${JSON.stringify(polyfill)})
    const { readFile } = await import('node:fs/promises')
    const { createHostilePeer } = await import(${JSON.stringify(fixtures)})
    const keyFile = ${JSON.stringify(keyFile ?? null)}
    const hex = keyFile == null ? null : (await readFile(keyFile, 'utf8')).trim().split('\\n').at(-1)
    const peer = await createHostilePeer({
      listen: [],
      ...(hex == null ? {} : { cluster: { id: 'any', key: new Uint8Array(Buffer.from(hex, 'hex')) } })
    })
    try {
      await peer.dial(${JSON.stringify(addr)}, 3000)
      process.stdout.write('connected')
    } catch (err) {
      process.stdout.write('refused: ' + (err.message || err.name))
    } finally {
      await peer.stop()
    }`
  return await runIn(i, script, 15_000)
}

describe.skipIf(!netnsAvailable())(`cluster key across hosts in network namespaces ${netnsAvailable() ? '' : `(skipped: ${netnsUnavailableReason()})`}`, () => {
  beforeAll(async () => {
    await cleanupStaleTestNetworks()
    net = await TestNetwork.create({ hosts: HOSTS })
    dir = await mkdtemp(join(tmpdir(), 'llmesh-trust-netns-'))
    await runLlmesh(['keygen', '--out', join(dir, 'cluster.key')])
    await runLlmesh(['keygen', '--out', join(dir, 'other.key')])
  }, 60_000)

  afterAll(async () => {
    await Promise.all(agents.map(async (a) => { await a?.kill() }))
    await net?.destroy()
    await rm(dir, { recursive: true, force: true })
  }, 60_000)

  it('joins hosts holding the key by mDNS and keeps a host with another key out', async () => {
    // the outsider starts first and dials host 0's address the whole time
    const outsider = await startHost(2, ['--cluster-key', join(dir, 'other.key'), '--bootstrap', `/ip4/${net.hosts[0]!.ip}/tcp/4778`])
    await Promise.all([0, 1].map(async (i) => await startHost(i, ['--cluster-key', join(dir, 'cluster.key')])))
    await waitFor('hosts 0 and 1 to find each other by mDNS', async () => await sees(0, 1) && await sees(1, 0), 30_000, 100)
    expect((await viewOf(0)).trust.mode).toBe('lab')
    expect((await viewOf(0)).trust.keyId).toBe((await viewOf(1)).trust.keyId)

    // two more bootstrap redials (every 2 s) from the outsider, on top of those made meanwhile
    await new Promise((resolve) => setTimeout(resolve, 4500))
    for (const i of [0, 1]) {
      const ids = (await viewOf(i)).nodes.map((n) => n.peerId)
      expect(ids).not.toContain(outsider.info.peerId)
      expect(ids).toHaveLength(2)
    }
    expect((await viewOf(2)).nodes.map((n) => n.peerId)).toEqual([outsider.info.peerId])
  }, 90_000)

  it('refuses a libp2p peer without the key, or with a wrong one, before any protocol', async () => {
    const target = agents[0]!.info.addrs.find((a) => a.includes(net.hosts[0]!.ip))!
    expect(await strangerDial(3, target)).toMatch(/^refused/)
    expect(await strangerDial(3, target, join(dir, 'other.key'))).toMatch(/^refused/)
    // the same peer with the cluster's key gets through: the refusals above are the key's doing
    expect(await strangerDial(3, target, join(dir, 'cluster.key'))).toBe('connected')
  }, 60_000)

  it('brings a fresh host in with llmesh invite and llmesh up --join', async () => {
    await agents[2]!.kill()
    agents[2] = undefined
    const { stdout } = await runLlmesh(['invite', '--data-dir', join(dir, 'host0'), '--cluster-key', join(dir, 'cluster.key')])
    const token = stdout.trim()
    expect(token).toMatch(/^llmesh-join-1\./)
    // a new data dir, no key, no mDNS: everything it knows comes from the token
    await startHost(3, ['--join', token, '--no-mdns'])
    await waitFor('host 3 to join hosts 0 and 1', async () => await sees(3, 0) && await sees(3, 1) && await sees(0, 3) && await sees(1, 3), 30_000, 100)
    const stored = join(dir, 'host3', 'cluster.key')
    expect((await stat(stored)).mode & 0o777).toBe(0o600)
    expect(await readFile(stored, 'utf8')).toBe(await readFile(join(dir, 'cluster.key'), 'utf8'))
    expect((await viewOf(3)).trust.keyId).toBe((await viewOf(0)).trust.keyId)
  }, 60_000)
})
