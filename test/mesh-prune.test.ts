/**
 * Dead entries leave the cluster document by the deterministic pruning rule: three agents on
 * loopback with a short pruneAfterMs; one is killed (no goodbye), the two others drop its
 * entry, keep each other's, and a restarted agent with the same peer id is taken back.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request } from 'undici'
import { startAgentProcess, waitFor, type AgentProcess } from '@llmesh/fixtures'

let dir: string
const agents: AgentProcess[] = []

async function records (a: AgentProcess): Promise<string[]> {
  const view = await (await request(`${a.info.api}/mesh/view`)).body.json() as { nodes: Array<{ peerId: string }> }
  return view.nodes.map((n) => n.peerId).sort()
}

async function start (name: string, bootstrap?: string): Promise<AgentProcess> {
  const a = await startAgentProcess({
    name,
    dataDir: join(dir, name),
    args: ['--config', join(dir, 'config.json'), '--api-port', '0', '--listen', '/ip4/127.0.0.1/tcp/0', '--no-mdns', '--log-level', 'warn',
      ...(bootstrap != null ? ['--bootstrap', bootstrap] : [])]
  })
  agents.push(a)
  return a
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'llmesh-prune-'))
  // prune after 6 s of silence (dead after 2 s): the rule checks every pruneAfterMs / 4
  await writeFile(join(dir, 'config.json'), JSON.stringify({ membership: { suspectAfterMs: 1000, deadAfterMs: 2000, pruneAfterMs: 6000 } }))
}, 30_000)

afterAll(async () => {
  await Promise.all(agents.map(async (a) => { await a.kill() }))
  await rm(dir, { recursive: true, force: true })
})

describe('pruning dead entries', () => {
  it('drops a killed host\'s entry everywhere after pruneAfterMs, keeps the live ones, and takes the host back when it returns', async () => {
    const a = await start('a')
    const b = await start('b', a.info.addrs[0])
    const c = await start('c', a.info.addrs[0])
    const all = [a, b, c].map((x) => x.info.peerId).sort()
    await waitFor('three records everywhere', async () => {
      for (const x of [a, b, c]) if ((await records(x)).length !== 3) return false
      return true
    }, 20_000)
    expect(await records(b)).toEqual(all)

    await c.kill()
    const live = [a, b].map((x) => x.info.peerId).sort()
    await waitFor('c pruned on a and b', async () => {
      return JSON.stringify(await records(a)) === JSON.stringify(live) && JSON.stringify(await records(b)) === JSON.stringify(live)
    }, 30_000, 200)

    // same data dir: same peer id; it writes its entry again and everyone takes it
    const back = await start('c', a.info.addrs[0])
    expect(back.info.peerId).toBe(c.info.peerId)
    await waitFor('c back everywhere', async () => {
      for (const x of [a, b, back]) if (JSON.stringify(await records(x)) !== JSON.stringify(all)) return false
      return true
    }, 20_000, 200)
  }, 90_000)
})
