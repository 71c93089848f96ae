/**
 * Nothing lost, nothing exposed (real agent processes, no runner): a snapshot that does not
 * decode is moved aside and the agent starts cold; a peer key or data dir other users could
 * read or write is refused with a message naming the file and the fix.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { chmod, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request } from 'undici'
import { ClusterDoc } from '@llmesh/state'
import { recordVerifier } from '@llmesh/mesh'
import { execFile } from 'node:child_process'
import { llmeshBin, startAgentProcess, type AgentProcess, LOOPBACK_AGENT_ARGS } from '@llmesh/fixtures'

let dir: string
const running: AgentProcess[] = []

beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'llmesh-crash-')) })
afterEach(async () => { await Promise.all(running.splice(0).map(async (a) => { await a.stop() })) })
afterAll(async () => { await rm(dir, { recursive: true, force: true }) })

async function start (name: string, dataDir: string): Promise<AgentProcess> {
  const a = await startAgentProcess({ name, dataDir, args: [...LOOPBACK_AGENT_ARGS] })
  running.push(a)
  return a
}

/** Runs `llmesh up` where it must refuse to start: its exit code and what it printed. */
async function refusedStart (dataDir: string): Promise<{ code: number | null, stderr: string }> {
  return await new Promise((resolve) => {
    execFile(process.execPath, [llmeshBin(), 'up', '--data-dir', dataDir, ...LOOPBACK_AGENT_ARGS], { timeout: 20_000 }, (err, _stdout, stderr) => {
      resolve({ code: err == null ? 0 : typeof err.code === 'number' ? err.code : null, stderr })
    })
  })
}

async function selfInView (a: AgentProcess): Promise<boolean> {
  const view = await (await request(`${a.info.api}/mesh/view`)).body.json() as { nodes: Array<{ peerId: string, self: boolean }> }
  return view.nodes.some((n) => n.self && n.peerId === a.info.peerId)
}

describe('a snapshot that does not decode', () => {
  for (const [kind, damage] of [
    ['truncated', (bytes: Buffer) => bytes.subarray(0, Math.floor(bytes.length / 2))],
    ['garbage', () => Buffer.from('this is not a cluster snapshot, just some text a tool left here\n')]
  ] as const) {
    it(`${kind}: is moved aside, logged, and the agent starts cold with the same peer id`, async () => {
      const dataDir = join(dir, kind)
      const first = await start(`snap-${kind}`, dataDir)
      await first.stop()
      const file = join(dataDir, 'cluster.snapshot')
      const saved = await readFile(file)
      // the stop wrote a whole snapshot holding this agent's record
      expect(new ClusterDoc('reader', new Uint8Array(saved), { verifier: recordVerifier() }).records().map((r) => r.peerId)).toEqual([first.info.peerId])
      const bad = damage(saved)
      await writeFile(file, bad)

      const second = await start(`snap-${kind}`, dataDir)
      expect(second.info.peerId).toBe(first.info.peerId)
      expect(await selfInView(second)).toBe(true)
      expect(second.output()).toContain('snapshot does not decode: moved aside, starting cold')
      const aside = (await readdir(dataDir)).filter((n) => /^cluster\.snapshot\.corrupt-\d+$/.test(n))
      expect(aside).toHaveLength(1)
      expect(await readFile(join(dataDir, aside[0]!))).toEqual(bad)

      // the next stop writes a good snapshot again
      await second.stop()
      expect(new ClusterDoc('reader', new Uint8Array(await readFile(file)), { verifier: recordVerifier() }).records().map((r) => r.peerId)).toEqual([first.info.peerId])
      expect((await readdir(dataDir)).filter((n) => n.endsWith('.tmp'))).toEqual([])
    })
  }
})

describe('files other users could read or write', () => {
  it('a peer.key readable by others is refused, naming the file and chmod 600', async () => {
    const dataDir = join(dir, 'key')
    const first = await start('key-mode', dataDir)
    await first.stop()
    const key = join(dataDir, 'peer.key')
    expect((await stat(key)).mode & 0o777).toBe(0o600)
    expect((await stat(dataDir)).mode & 0o777).toBe(0o700)
    await chmod(key, 0o644)
    const refused = await refusedStart(dataDir)
    expect(refused.code).toBe(1)
    expect(refused.stderr).toContain(`peer key ${key} is accessible by other users (mode 0644)`)
    expect(refused.stderr).toContain(`chmod 600 ${key}`)
    await chmod(key, 0o600)
    const again = await start('key-mode', dataDir)
    expect(again.info.peerId).toBe(first.info.peerId)
  })

  it('a second agent on the data dir of a running one is refused, and the first keeps running', async () => {
    const dataDir = join(dir, 'shared')
    const first = await start('shared', dataDir)
    const refused = await refusedStart(dataDir)
    expect(refused.code).toBe(1)
    expect(refused.stderr).toContain(`another llmesh agent (pid ${first.pid}) runs with the data dir ${dataDir}`)
    expect(await selfInView(first)).toBe(true)
    const pids = JSON.parse(await readFile(join(dataDir, 'runners.pid'), 'utf8')) as { agent?: { pid: number } }
    expect(pids.agent?.pid).toBe(first.pid)
  })

  it('a data dir others may write is refused, naming the dir and chmod 700', async () => {
    const dataDir = join(dir, 'open-dir')
    await mkdir(dataDir)
    await chmod(dataDir, 0o777)
    const refused = await refusedStart(dataDir)
    expect(refused.code).toBe(1)
    expect(refused.stderr).toContain(`data directory ${dataDir} is writable by other users`)
    expect(refused.stderr).toContain(`chmod 700 ${dataDir}`)
    expect(await readdir(dataDir)).toEqual([])
  })
})
