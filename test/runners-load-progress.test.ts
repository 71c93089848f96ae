/**
 * A real llama-server on the tiny model, run as a router's child: its load progress (read from
 * its stdout) is the runner's progress while 'loading' and is gone at 'ready'; the end of its
 * stdin (the agent gone) ends it; a stop is still graceful.
 */
import { describe, expect, it } from 'vitest'
import { LlamaServerRunner, parentDeathPrefix, silentLogger, waitFor, type RunnerInfo, type RunnerProcess, processCleanup } from './runners-helpers.js'

const llamaServer = process.env['LLMESH_TEST_LLAMA_SERVER']!
const model = process.env['LLMESH_TEST_MODEL']!
const logger = silentLogger()
/** restarts off: an exit is seen as the failure it is, not hidden by the next start */
const base = { binary: llamaServer, modelPath: model, modelName: 'tiny', slots: 1, ctxSize: 1024, logger, restart: false as const, healthIntervalMs: 200, healthTimeoutMs: 1000, healthFailures: 2 }

const { cleanups, pids } = processCleanup()

describe('llama-server load progress', () => {
  it('reports the load progress while loading, from its first to its last sample, and none once ready', async () => {
    const procs: RunnerProcess[] = []
    const r = new LlamaServerRunner({ ...base, id: 't-progress', spawn: { onSpawn: (p) => { procs.push(p); if (p.pid != null) pids.add(p.pid) } } })
    cleanups.push(async () => { await r.stop() })
    expect(r.childMode).toBe(true)
    const seen: RunnerInfo[] = []
    r.onState((_, info) => { seen.push(info) })
    await r.start()
    expect(r.state).toBe('ready')

    const samples = seen.filter((i) => i.state === 'loading' && i.progress != null).map((i) => i.progress!)
    // llama.cpp always reports the first (0) and the last (1) sample of a load
    expect(samples[0]).toBe(0)
    expect(samples.at(-1)).toBe(1)
    for (let i = 1; i < samples.length; i++) expect(samples[i]).toBeGreaterThan(samples[i - 1]!)
    expect(seen.at(-1)).toMatchObject({ state: 'ready' })
    expect(seen.at(-1)!.progress).toBeUndefined()
    expect(r.info().progress).toBeUndefined()

    // a stop ends the child by its exit command, not by the SIGKILL after the grace period
    // (SIGTERM alone leaves a ready child waiting on stdin), and is no crash
    const proc = procs.at(-1)!
    await r.stop()
    expect(proc.exit?.signal).not.toBe('SIGKILL')
    expect(r.state).toBe('stopped')
    expect(seen.map((i) => i.state)).not.toContain('failed')
  })

  it('ends llama-server when its stdin closes (the agent is gone), with or without the parent-death prefix', async () => {
    const prefix = await parentDeathPrefix()
    for (const spawn of [{}, ...(prefix != null ? [{ parentDeathPrefix: prefix }] : [])]) {
      const procs: RunnerProcess[] = []
      const r = new LlamaServerRunner({ ...base, id: 't-orphan', spawn: { ...spawn, onSpawn: (p) => { procs.push(p); if (p.pid != null) pids.add(p.pid) } } })
      cleanups.push(async () => { await r.stop() })
      await r.start()
      const proc = procs.at(-1)!
      expect(proc.alive).toBe(true)

      // what the agent's death does to the pipe: its end closes, with no signal sent
      proc.child.stdin!.destroy()
      const exit = await proc.exited
      expect(exit.signal).toBeNull()
      expect(exit.code).toBe(1)
      await waitFor('the runner to report the exit', () => r.state === 'failed')
      expect(r.lastError).toMatch(/llama-server exited with code 1/)
      await r.stop()
    }
  })
})
