import { execFile } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { llmeshBin, startAgentProcess, waitFor, type AgentProcess } from '@llmesh/fixtures'

const run = promisify(execFile)
const LOOPBACK = ['--api-port', '0', '--listen', '/ip4/127.0.0.1/tcp/0', '--no-mdns']

describe('the llmesh process: exit codes and log formats', () => {
  let dir: string
  const agents: AgentProcess[] = []
  beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'llmesh-cli-proc-')) })
  afterEach(async () => { await Promise.all(agents.splice(0).map(async (a) => { await a.stop() })) })
  afterAll(async () => { await rm(dir, { recursive: true, force: true }) })

  it('exits 2 with one line for a bad --bootstrap, before starting anything', async () => {
    const err = await run(process.execPath, [llmeshBin(), 'up', '--data-dir', join(dir, 'never'), '--bootstrap', 'garbage'], { timeout: 30_000 })
      .then(() => undefined, (e: { code: number, stdout: string, stderr: string }) => e)
    expect(err?.code).toBe(2)
    expect(err?.stdout).toBe('')
    expect(err?.stderr).toMatch(/^llmesh up: --bootstrap 'garbage': not a multiaddr [^\n]*\n$/)
  })

  it('exits 1 with what failed when the agent cannot start (its API port is taken)', async () => {
    const taken = createServer()
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve))
    try {
      const port = String((taken.address() as AddressInfo).port)
      const err = await run(process.execPath, [llmeshBin(), 'up', '--data-dir', join(dir, 'taken'), '--api-port', port, '--listen', '/ip4/127.0.0.1/tcp/0', '--no-mdns', '--log-level', 'silent'], { timeout: 60_000 })
        .then(() => undefined, (e: { code: number, stderr: string }) => e)
      expect(err?.code).toBe(1)
      expect(err?.stderr).toBe(`llmesh up: listen EADDRINUSE: address already in use 127.0.0.1:${port}\n`)
    } finally {
      await new Promise((resolve) => taken.close(resolve))
    }
  })

  it('logs one JSON object a line by default, pino-pretty lines with --log-format pretty; SIGTERM exits 0', async () => {
    const json = await startAgentProcess({ name: 'logs-json', dataDir: join(dir, 'json'), args: LOOPBACK })
    agents.push(json)
    const pretty = await startAgentProcess({ name: 'logs-pretty', dataDir: join(dir, 'pretty'), args: [...LOOPBACK, '--log-format', 'pretty'] })
    agents.push(pretty)

    // a line may reach the pipe after agent.json is written: wait (bounded) for an info line of each
    const prettyInfo = /^\[[\d:.]+\] INFO \(logs-pretty\/\d+\): /
    await waitFor('an info line in JSON', () => json.output().includes('"level":30'), 15_000)
    await waitFor('an info line from pino-pretty', () => pretty.output().split('\n').some((l) => prettyInfo.test(l)), 15_000)
    const jsonLines = json.output().split('\n').filter((l) => l !== '')
    for (const line of jsonLines) expect(JSON.parse(line)).toMatchObject({ name: 'logs-json', level: expect.any(Number) })

    const prettyLines = pretty.output().split('\n').filter((l) => l !== '')
    // '[12:34:56.789] INFO (logs-pretty/1234): listening', not colourised off a terminal
    expect(prettyLines.some((l) => prettyInfo.test(l))).toBe(true)
    expect(prettyLines.some((l) => l.startsWith('{'))).toBe(false)
    expect(pretty.output()).not.toContain('\u001b[')

    // what a service manager does on stop: SIGTERM, and the agent leaves and exits 0
    await pretty.stop(30_000)
    expect(pretty.child.exitCode).toBe(0)
  })
})
