/**
 * No runner outlives its agent (real agents, real llama-servers): kill -9 of an agent takes its
 * llama-server with it (parent-death signal); without that signal a llama-server run as a
 * router's child exits when its stdin pipe from the agent ends, and one run plainly survives and
 * is reaped from the pid file at the next start, and the restarted agent runs one runner for the
 * model, not two; SIGTERM while a runner is being restarted leaves no llama-server; SIGTERM during a
 * stream ends it with an SSE error event.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { readFileSync } from 'node:fs'
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { request } from 'undici'
import { startAgentProcess, waitFor, type AgentProcess, LOOPBACK_AGENT_ARGS } from '@llmesh/fixtures'

const llamaServer = process.env['LLMESH_TEST_LLAMA_SERVER']!
const model = process.env['LLMESH_TEST_MODEL']!

let dir: string
const running: AgentProcess[] = []
const aliases: string[] = []

beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'llmesh-crash-runners-')) })
afterEach(async () => {
  await Promise.all(running.splice(0).map(async (a) => { await a.stop() }))
  // belt and braces: no llama-server of these tests outlives them, whatever an assertion said
  for (const alias of aliases.splice(0)) for (const pid of await llamaServersOf(alias)) { try { process.kill(pid, 'SIGKILL') } catch {} }
})
afterAll(async () => { await rm(dir, { recursive: true, force: true }) })

/** Pids of live llama-servers started with `--alias alias` (each test uses its own alias). */
async function llamaServersOf (alias: string): Promise<number[]> {
  const pids: number[] = []
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue
    const cmdline = await readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '')
    const args = cmdline.split('\0')
    const at = args.indexOf('--alias')
    if (at >= 0 && args[at + 1] === alias && args.some((a) => a === llamaServer)) pids.push(Number(name))
  }
  return pids
}

function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch {
    return false
  }
  // a zombie (killed, not yet waited for by its new parent) is gone for our purposes
  return !/^\d+ \(.*\) Z /.test(readStat(pid))
}

function readStat (pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return ''
  }
}

interface RunnerRow { id: string, model: string, state: string, pid?: number }

async function runners (a: AgentProcess): Promise<RunnerRow[]> {
  return ((await (await request(`${a.info.api}/admin/runners`)).body.json()) as { runners: RunnerRow[] }).runners
}

/** Starts an agent serving the tiny model under a fresh alias; resolves once its runner is ready. */
async function agentWithModel (name: string, opts: { dataDir?: string, alias?: string, env?: NodeJS.ProcessEnv, args?: string[] } = {}): Promise<{ agent: AgentProcess, alias: string, dataDir: string, pid: number }> {
  const alias = opts.alias ?? `crash-${name}-${randomBytes(3).toString('hex')}`
  if (!aliases.includes(alias)) aliases.push(alias)
  const dataDir = opts.dataDir ?? join(dir, name)
  const agent = await startAgentProcess({
    name,
    dataDir,
    args: [...LOOPBACK_AGENT_ARGS, '--model', `${alias}=${model}`, '--llama-server', llamaServer, ...(opts.args ?? [])],
    ...(opts.env != null ? { env: opts.env } : {})
  })
  running.push(agent)
  const pid = await waitFor(`${name}'s runner to be ready`, async () => {
    const r = (await runners(agent)).find((x) => x.model === alias)
    return r?.state === 'ready' && r.pid != null ? r.pid : undefined
  }, 60_000)
  return { agent, alias, dataDir, pid }
}

interface PidFile { agent?: { pid: number }, runners: Array<{ pid: number, binary: string }> }

const NO_PDEATHSIG = { LLMESH_RUNNER_PDEATHSIG: '0' }

/**
 * Agent arguments for a llama-server run plainly, not as a router's child: a loaded child exits
 * when its agent's stdin pipe ends, which would hide the mechanism a test is about.
 */
async function plainLlamaServer (): Promise<string[]> {
  const config = join(dir, 'plain-llama-server.json')
  await writeFile(config, JSON.stringify({ llamaServer: { routerChild: false } }))
  return ['--config', config]
}

describe('kill -9 of an agent', () => {
  it('takes its llama-server with it (parent-death signal)', async () => {
    const { agent, alias, pid } = await agentWithModel('sigkill', { args: await plainLlamaServer() })
    expect(await llamaServersOf(alias)).toEqual([pid])
    await agent.kill()
    await waitFor('the llama-server of the killed agent to be gone', () => !alive(pid), 2000)
    expect(await llamaServersOf(alias)).toEqual([])
  })

  it('without the signal, a loaded llama-server run as a router\'s child ends with its agent\'s stdin pipe', async () => {
    const { agent, alias, pid } = await agentWithModel('stdin', { env: NO_PDEATHSIG })
    expect(await llamaServersOf(alias)).toEqual([pid])
    await agent.kill()
    await waitFor('the llama-server of the killed agent to be gone', () => !alive(pid), 10_000)
    expect(await llamaServersOf(alias)).toEqual([])
  })

  it('without the signal, the survivor is reaped at the next start: one llama-server for the model, not two', async () => {
    const plain = await plainLlamaServer()
    const first = await agentWithModel('reap', { env: NO_PDEATHSIG, args: plain })
    const recorded = JSON.parse(await readFile(join(first.dataDir, 'runners.pid'), 'utf8')) as PidFile
    expect(recorded.agent?.pid).toBe(first.agent.pid)
    expect(recorded.runners.map((e) => [e.pid, e.binary])).toEqual([[first.pid, llamaServer]])
    await first.agent.kill()
    // the scenario: nothing killed it, it is an orphan now
    expect(alive(first.pid)).toBe(true)

    const second = await agentWithModel('reap', { env: NO_PDEATHSIG, dataDir: first.dataDir, alias: first.alias, args: plain })
    expect(alive(first.pid)).toBe(false)
    expect(second.pid).not.toBe(first.pid)
    expect(await llamaServersOf(first.alias)).toEqual([second.pid])
    expect(second.agent.output()).toContain('a runner of a previous run still lives: stopping it')
    const now = JSON.parse(await readFile(join(first.dataDir, 'runners.pid'), 'utf8')) as PidFile
    expect([now.agent?.pid, now.runners.map((e) => e.pid)]).toEqual([second.agent.pid, [second.pid]])
  })
})

describe('SIGTERM', () => {
  for (const moment of ['failed', 'respawned'] as const) {
    it(`while a runner is being restarted (${moment}) leaves no llama-server`, async () => {
      // without the parent-death signal: only the stop itself may clean up
      const { agent, alias, pid } = await agentWithModel(`restart-${moment}`, { env: NO_PDEATHSIG })
      process.kill(pid, 'SIGKILL')
      if (moment === 'failed') {
        // the runner saw the crash and waits for its restart backoff
        await waitFor('the runner to fail', async () => (await runners(agent)).some((r) => r.model === alias && r.state === 'failed'), 10_000)
      } else {
        // a new llama-server was spawned and is loading
        await waitFor('a new llama-server', async () => (await llamaServersOf(alias)).some((p) => p !== pid), 10_000, 5)
      }
      await agent.stop()
      expect(agent.child.exitCode).toBe(0)
      await waitFor('no llama-server of the stopped agent', async () => (await llamaServersOf(alias)).length === 0, 2000)
      expect(await llamaServersOf(alias)).toEqual([])
    })
  }

  it('ends an open SSE stream with an error event, then the agent exits with its runner stopped', async () => {
    const config = join(dir, 'grace-0.json')
    await writeFile(config, JSON.stringify({ shutdownGraceMs: 0 }))
    const { agent, alias, pid } = await agentWithModel('sse', { args: ['--config', config] })
    const res = await request(`${agent.info.api}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: alias, stream: true, max_tokens: 1800, ignore_eos: true, messages: [{ role: 'user', content: 'count forever' }] })
    })
    expect(res.statusCode).toBe(200)
    const chunks = res.body[Symbol.asyncIterator]()
    let text = Buffer.from((await chunks.next()).value as Buffer).toString('utf8')
    expect(text).toContain('data: ')
    const stopped = agent.stop()
    for (let n = await chunks.next(); n.done !== true; n = await chunks.next()) text += Buffer.from(n.value as Buffer).toString('utf8')
    await stopped
    expect(text).not.toContain('data: [DONE]')
    const events = text.split('\n\n').filter((e) => e.startsWith('data: ')).map((e) => JSON.parse(e.slice(6)) as Record<string, unknown>)
    expect(events.at(-1)).toMatchObject({ error: { code: 'no_capacity', message: 'the agent is shutting down' } })
    expect(agent.child.exitCode).toBe(0)
    await waitFor('the runner to be gone', () => !alive(pid), 2000)
  })
})
