/**
 * Models started on demand by the RunnerManager, with the real llama-server on the tiny model:
 * concurrent ensure() calls share one start, a model that cannot load stops restarting and says
 * why, two models started at once get their own ports, a port taken before llama-server binds
 * it is swapped for another.
 */
import { describe, expect, it } from 'vitest'
import { copyFile, mkdtemp, rm, truncate } from 'node:fs/promises'
import { createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { LlmeshError } from '@llmesh/protocol'
import { LlamaServerRunner, PortPicker, RunnerManager, readAll, silentLogger, type Runner, type RunnerManagerInit, processCleanup, QUICK_SUPERVISION } from './runners-helpers.js'

const llamaServer = process.env['LLMESH_TEST_LLAMA_SERVER']!
const model = process.env['LLMESH_TEST_MODEL']!
const logger = silentLogger()
const quick = QUICK_SUPERVISION

const { cleanups, pids } = processCleanup()

/** A folder of models: copies of the tiny model under the given names, started on demand. */
async function onDemand (names: string[], over: Partial<RunnerManagerInit> = {}): Promise<{ manager: RunnerManager, dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'llmesh-on-demand-'))
  cleanups.push(async () => { await rm(dir, { recursive: true, force: true }) })
  for (const name of names) await copyFile(model, join(dir, `${name}.gguf`))
  const manager = new RunnerManager({
    logger, slots: 1, ctxSize: 512, probeGpus: false, llamaServer: { binary: llamaServer }, modelDirs: [dir],
    onProcesses: (entries) => { for (const e of entries) pids.add(e.pid) },
    ...quick, ...over
  })
  cleanups.push(async () => { await manager.stop() })
  await manager.start()
  return { manager, dir }
}

function chat (): Record<string, unknown> {
  return { max_tokens: 3, messages: [{ role: 'user', content: 'hello' }] }
}

describe('RunnerManager.ensure', () => {
  it('starts one runner for concurrent calls; a caller that leaves does not stop the load', async () => {
    const { manager } = await onDemand(['alpha'])
    expect(manager.runners()).toEqual([])
    expect(manager.catalogModel('alpha')?.info.name).toBe('alpha')
    const told: Array<{ id: string, state: string }> = []
    const onRunner = (r: Runner): void => { told.push({ id: r.id, state: r.state }) }
    const leaving = new AbortController()
    const calls = [manager.ensure('alpha', { onRunner }), manager.ensure('alpha', { onRunner }), manager.ensure('alpha', { onRunner, signal: leaving.signal })]
    leaving.abort(new LlmeshError('DEADLINE_EXCEEDED', 'caller gone'))
    const [a, b, c] = await Promise.allSettled(calls)
    expect(c).toMatchObject({ status: 'rejected', reason: { code: 'DEADLINE_EXCEEDED' } })
    expect(a.status === 'fulfilled' && b.status === 'fulfilled' && a.value === b.value).toBe(true)
    const runner = (a as PromiseFulfilledResult<Runner>).value
    expect(runner.state).toBe('ready')
    expect(manager.runners()).toEqual([runner])
    // every caller heard of the runner at once, before it was ready
    expect(told).toHaveLength(3)
    expect(told.every((t) => t.id === runner.id && t.state !== 'ready')).toBe(true)
    expect(JSON.parse(await readAll(await manager.infer('alpha', '/v1/chat/completions', chat())))).toMatchObject({ object: 'chat.completion', model: 'alpha' })
    // later calls reuse it
    expect(await manager.ensure('alpha')).toBe(runner)
    await expect(manager.ensure('nope')).rejects.toMatchObject({ code: 'MODEL_NOT_FOUND' })

    let changes = 0
    manager.onChange(() => { changes++ })
    await manager.stopRunner(runner.id)
    expect(runner.state).toBe('stopped')
    expect(manager.runners()).toEqual([])
    expect(changes).toBeGreaterThan(0)
  })

  it('two models at once: each its own port, both answer', async () => {
    const { manager } = await onDemand(['left', 'right'])
    const [l, r] = await Promise.all([manager.ensure('left'), manager.ensure('right')]) as LlamaServerRunner[]
    expect(l!.port).toBeGreaterThan(0)
    expect(l!.port).not.toBe(r!.port)
    for (const name of ['left', 'right']) {
      expect(JSON.parse(await readAll(await manager.infer(name, '/v1/chat/completions', chat())))).toMatchObject({ model: name })
    }
  })

  it('a model that cannot load stops restarting: RUNNER_FAILED with its stderr tail, and no new start on the next call', async () => {
    const { manager, dir } = await onDemand(['broken'], { crashLoopFailures: 3 })
    // the header is whole (the catalog lists it), the weights are cut off
    await truncate(join(dir, 'broken.gguf'), 200_000)
    const err = await manager.ensure('broken').catch((e: unknown) => e) as LlmeshError
    expect(err).toBeInstanceOf(LlmeshError)
    expect(err.code).toBe('RUNNER_FAILED')
    expect(err.message).toMatch(/gave up after 3 failures in a row/)
    expect(err.message).toMatch(/failed to load model/)
    const [runner] = manager.runners()
    const d = runner!.describe()
    expect(d).toMatchObject({ state: 'failed', gaveUp: true, restarts: 2 })
    expect(d.stderrTail).toMatch(/failed to load model/)
    expect(d.stderrTail!.length).toBeLessThanOrEqual(2048)
    expect(d.pid).toBeUndefined()

    await expect(manager.ensure('broken')).rejects.toMatchObject({ code: 'RUNNER_FAILED' })
    expect(runner!.describe().restarts).toBe(2)
    expect(manager.runners()).toEqual([runner])
  })
})

describe('llama-server ports', () => {
  it('a port taken between the pick and the bind is swapped for another, not counted as a failure', async () => {
    // held by another program; whoever connects to it is hung up on
    const taken: Server = createServer((socket) => { socket.destroy() })
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve))
    cleanups.push(async () => { await new Promise((resolve) => taken.close(resolve)) })
    const takenPort = (taken.address() as { port: number }).port
    /** hands out the taken port first, as a pick racing another program would */
    class RacedPicker extends PortPicker {
      private first = true
      override async pick (host?: string): Promise<number> {
        if (!this.first) return await super.pick(host)
        this.first = false
        return takenPort
      }
    }
    const r = new LlamaServerRunner({ id: 't-raced', binary: llamaServer, modelPath: model, modelName: 'tiny', slots: 1, ctxSize: 512, logger, ports: new RacedPicker(), ...quick })
    cleanups.push(async () => { await r.stop() })
    await r.start()
    pids.add(r.pid!)
    expect(r.state).toBe('ready')
    expect(r.port).not.toBe(takenPort)
    expect(r.restarts).toBe(0)
    expect(r.lastError).toBeUndefined()
    expect(await readAll(await r.infer('/v1/chat/completions', chat()))).toContain('chat.completion')
  })
})
