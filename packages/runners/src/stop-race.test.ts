import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { LlamaServerRunner } from './llama-server.js'
import type { RunnerProcess } from './process.js'

/**
 * A stop that lands while a runner is (re)starting leaves no process behind: a launch that finds
 * itself stopped before it spawned does not spawn, one stopped after kills what it spawned. The
 * "server" is a script that never becomes healthy, so the runner sits in its launch.
 */
let dir: string
let binary: string
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'llmesh-stop-race-'))
  binary = join(dir, 'never-healthy-server')
  await writeFile(binary, '#!/bin/sh\nexec sleep 300\n')
  await chmod(binary, 0o755)
})
afterAll(async () => { await rm(dir, { recursive: true, force: true }) })

function runner (spawned: RunnerProcess[]): LlamaServerRunner {
  return new LlamaServerRunner({
    id: 'race', binary, modelPath: '/m.gguf', modelName: 'm', logger: pino({ level: 'silent' }),
    restart: { minDelayMs: 1, maxDelayMs: 1, jitter: 0 },
    spawn: { onSpawn: (p) => { spawned.push(p) } }
  })
}

describe('stop while a runner starts', () => {
  it('before the process is spawned: nothing is spawned', async () => {
    const spawned: RunnerProcess[] = []
    const r = runner(spawned)
    const starting = r.start().catch((err: unknown) => err)
    await r.stop()
    expect(await starting).toMatchObject({ code: 'RUNNER_FAILED' })
    await new Promise((resolve) => setTimeout(resolve, 100))
    expect(spawned).toEqual([])
  })

  it('after the process is spawned: it is killed, and no restart spawns another', async () => {
    const spawned: RunnerProcess[] = []
    const r = runner(spawned)
    const starting = r.start().catch((err: unknown) => err)
    while (spawned.length === 0) await new Promise((resolve) => setTimeout(resolve, 5))
    // the process dies: the runner fails and schedules a restart 1 ms later
    spawned[0]!.child.kill('SIGKILL')
    await starting
    while (spawned.length < 2) await new Promise((resolve) => setTimeout(resolve, 5))
    await r.stop()
    await new Promise((resolve) => setTimeout(resolve, 100))
    expect(spawned.every((p) => !p.alive)).toBe(true)
    expect(r.state).toBe('stopped')
  })
})
