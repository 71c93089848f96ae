/**
 * The CLI's mesh commands against two real agents on loopback: B serves the tiny model on a
 * real llama-server, A has none. Every command asks A, through the built `llmesh` binary, and
 * must tell what B holds and does.
 */
import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { request } from 'undici'
import { LOOPBACK_AGENT_ARGS, llmeshBin, runLlmesh, startAgentProcess, waitFor, waitForReadyRunner, type AgentProcess } from '@llmesh/fixtures'

const llamaServer = process.env['LLMESH_TEST_LLAMA_SERVER']!
const model = process.env['LLMESH_TEST_MODEL']!

let dir: string
let a: AgentProcess
let b: AgentProcess
let bRunner: { port: number, pid: number }

/** llama-server's own counter of generated tokens (its Prometheus endpoint). */
async function tokensPredicted (): Promise<number> {
  const text = await (await request(`http://127.0.0.1:${bRunner.port}/metrics`)).body.text()
  return Number(/^llamacpp:tokens_predicted_total\s+([\d.e+]+)/m.exec(text)?.[1] ?? NaN)
}

/** `llmesh ARGS --api A --json`, its output parsed. */
async function cliJson<T> (...args: string[]): Promise<T> {
  const { stdout } = await runLlmesh([...args, '--api', a.info.api, '--json'], 60_000)
  return JSON.parse(stdout) as T
}

/** `llmesh ARGS` that must fail: its exit code and stderr. */
async function cliFails (...args: string[]): Promise<{ code: number, stderr: string }> {
  return await runLlmesh(args, 60_000).then(() => ({ code: 0, stderr: '' }), (e: { code: number, stderr: string }) => ({ code: e.code, stderr: e.stderr }))
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'llmesh-cli-mesh-'))
  b = await startAgentProcess({ name: 'host-b', dataDir: join(dir, 'b'), args: [...LOOPBACK_AGENT_ARGS, '--model', `tiny=${model}`, '--llama-server', llamaServer, '--slots', '2'] })
  a = await startAgentProcess({ name: 'host-a', dataDir: join(dir, 'a'), args: [...LOOPBACK_AGENT_ARGS, '--bootstrap', b.info.addrs[0]!] })
  await waitForReadyRunner(a, b, { model: 'tiny' })
  const runners = await (await request(`${b.info.api}/admin/runners`)).body.json() as { runners: Array<{ port: number, pid: number }> }
  bRunner = runners.runners[0]!
}, 120_000)

afterAll(async () => {
  await Promise.all([a?.stop(), b?.stop()])
  await rm(dir, { recursive: true, force: true })
})

describe('llmesh mesh commands, asked of A, through the built CLI', () => {
  it('peers: both hosts, B connected and alive, with versions and addresses', async () => {
    const peers = await cliJson<Array<{ name: string, peerId: string, self: boolean, state: string, link: string, version: string, addrs: string[], heartbeatAgeMs: number | null }>>('peers')
    expect(peers.map((p) => p.name)).toEqual(['host-a', 'host-b'])
    expect(peers[0]).toMatchObject({ self: true, link: 'self', peerId: a.info.peerId })
    expect(peers[1]).toMatchObject({ self: false, link: 'connected', state: 'alive', peerId: b.info.peerId })
    expect(peers[1]!.heartbeatAgeMs).not.toBeNull()
    expect(peers.every((p) => p.version !== '' && p.addrs.length > 0)).toBe(true)
  })

  it('models: tiny is ready, on B\'s disk and placed on B, with its size and context', async () => {
    const models = await cliJson<Array<{ name: string, state: string, sizeBytes: number, contextLength: number | null, onDisk: Array<{ host: string }>, placements: Array<{ host: string, state: string, reason: string }> }>>('models')
    expect(models.map((m) => m.name)).toEqual(['tiny'])
    const [tiny] = models
    expect(tiny).toMatchObject({ state: 'ready', onDisk: [{ host: 'host-b', source: 'file' }], placements: [{ host: 'host-b', state: 'ready', reason: 'config' }], pins: [] })
    expect(tiny!.sizeBytes).toBeGreaterThan(0)
    expect(tiny!.contextLength).toBeGreaterThan(0)
  })

  it('ps and placements: B\'s llama-server runner with its slots; B\'s placement of tiny', async () => {
    const ps = await cliJson<Array<{ host: string, model: string, kind: string, state: string, slots: number, slotsBusy: number | null, queue: number | null }>>('ps')
    expect(ps).toHaveLength(1)
    expect(ps[0]).toMatchObject({ host: 'host-b', model: 'tiny', kind: 'llama-server', slots: 2 })
    expect(['ready', 'busy']).toContain(ps[0]!.state)
    const placements = await cliJson<Array<{ model: string, host: string, state: string, reason: string, since: number }>>('placements')
    expect(placements).toEqual([expect.objectContaining({ model: 'tiny', host: 'host-b', state: 'ready', reason: 'config' })])
  })

  it('chat -p: one answer, served by B\'s llama-server', async () => {
    const before = await tokensPredicted()
    const turn = await cliJson<{ model: string, prompt: string, reply: string, host: string, peerId: string }>('chat', '-p', 'hello mesh', '--max-tokens', '8')
    expect(turn).toMatchObject({ model: 'tiny', prompt: 'hello mesh', host: 'host-b', peerId: b.info.peerId })
    expect(typeof turn.reply).toBe('string')
    expect(await tokensPredicted()).toBeGreaterThan(before)
    // no model named: the only one; an unknown model: exit 1 naming the ones there are
    expect(await cliJson<{ model: string }>('chat', '-p', 'again', '--max-tokens', '2')).toMatchObject({ model: 'tiny' })
    expect(await cliFails('chat', 'nope', '-p', 'x', '--api', a.info.api)).toEqual({ code: 1, stderr: "llmesh chat: unknown model 'nope': the mesh has tiny\n" })
  })

  it('chat, interactive: two lines on stdin, two answers served by B, then end of input ends it', async () => {
    const before = await tokensPredicted()
    const child = spawn(process.execPath, [llmeshBin(), 'chat', 'tiny', '--api', a.info.api, '--max-tokens', '4', '--json'], { stdio: ['pipe', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.on('data', (d: Buffer) => { out += d.toString() })
    child.stderr.on('data', (d: Buffer) => { err += d.toString() })
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => { resolve(code) }))
    try {
      child.stdin.end('first line\nsecond line\n')
      expect(await exited).toBe(0)
    } finally {
      if (child.exitCode == null) child.kill()
    }
    expect(err).toBe('')
    const turns = out.trim().split('\n').map((l) => JSON.parse(l) as { prompt: string, host: string })
    expect(turns.map((t) => [t.prompt, t.host])).toEqual([['first line', 'host-b'], ['second line', 'host-b']])
    expect(await tokensPredicted()).toBeGreaterThan(before)
  })

  it('pin and unpin through A reach B\'s view; an unknown host is refused', async () => {
    const pinned = await cliJson<{ pins: Array<{ model: string, host: string }> }>('pin', 'tiny', '--host', 'host-b')
    expect(pinned.pins).toEqual([{ model: 'tiny', host: 'host-b' }])
    await waitFor('B to see the pin', async () => {
      const { pins } = await (await request(`${b.info.api}/admin/pins`)).body.json() as { pins: Array<{ model: string, host?: string }> }
      return pins.some((p) => p.model === 'tiny' && p.host === b.info.peerId)
    })
    expect((await cliJson<Array<{ name: string, pins: string[] }>>('models'))[0]!.pins).toEqual(['host-b'])
    const unpinned = await cliJson<{ pins: unknown[] }>('unpin', 'tiny', '--host', 'host-b')
    expect(unpinned.pins).toEqual([])
    const bad = await cliFails('pin', 'tiny', '--host', 'no-such-host', '--api', a.info.api)
    expect(bad.code).toBe(1)
    expect(bad.stderr).toMatch(/^llmesh pin: .*no-such-host/)
  })

  it('status --watch --count 2 --json: two snapshots, one a line', async () => {
    const { stdout } = await runLlmesh(['status', '--watch', '--count', '2', '--json', '--api', a.info.api], 60_000)
    const snapshots = stdout.trim().split('\n').map((l) => JSON.parse(l) as { nodes: Array<{ name: string }> })
    expect(snapshots).toHaveLength(2)
    expect(snapshots.every((s) => s.nodes.map((n) => n.name).join() === 'host-a,host-b')).toBe(true)
  })
})
