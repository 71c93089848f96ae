/**
 * Real llama-server and rpc-server processes on the tiny model: start, concurrent requests up
 * to the slot count, a fast token stream read in batches, kill -9 mid-stream (the client gets a clear error, the runner comes back),
 * a stalled stream (SIGSTOP) aborted with STALLED and the runner restarted, two models on one
 * host on different ports, an rpc-server as a layer holder of a coordinator.
 */
import { describe, expect, it } from 'vitest'
import { copyFile, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { LlmeshError } from '@llmesh/protocol'
import { STREAM_COALESCE_MS } from '@llmesh/kit'
import { LlamaServerRunner, RpcServerRunner, RunnerManager, readAll, silentLogger, waitFor, type Runner, processCleanup, QUICK_SUPERVISION } from './runners-helpers.js'

const llamaServer = process.env['LLMESH_TEST_LLAMA_SERVER']!
const rpcServer = process.env['LLMESH_TEST_RPC_SERVER']!
const model = process.env['LLMESH_TEST_MODEL']!
const logger = silentLogger()
const quick = QUICK_SUPERVISION

const { cleanups, pids } = processCleanup()

function track<T extends Runner> (r: T): T {
  cleanups.push(async () => { await r.stop() })
  r.onState(() => { const pid = r.describe().pid; if (pid != null) pids.add(pid) })
  return r
}

function chat (maxTokens: number, stream = true): Record<string, unknown> {
  return { stream, max_tokens: maxTokens, messages: [{ role: 'user', content: 'hello runners' }] }
}

describe('llama-server runner', () => {
  it('starts on an allocated port, serves concurrent requests up to its slots, and stays ready while they run', async () => {
    const r = track(new LlamaServerRunner({ id: 't-llama', binary: llamaServer, modelPath: model, modelName: 'tiny', slots: 2, ctxSize: 1024, logger, ...quick }))
    const states: string[] = []
    r.onState((s) => { states.push(s) })
    await r.start()
    expect(r.state).toBe('ready')
    expect(r.port).toBeGreaterThan(0)
    expect(states[0]).toBe('starting')
    expect((await r.health()).ok).toBe(true)
    expect(await (await fetch(`http://127.0.0.1:${r.port}/props`)).json()).toMatchObject({ total_slots: 2 })
    expect(await r.capacity()).toEqual({ slots: 2, busy: 0 })

    // two endless streams, one token read from each: both slots are generating
    const open = await Promise.all([0, 1].map(async () => (await r.infer('/v1/chat/completions', { ...chat(100_000), ignore_eos: true })).body[Symbol.asyncIterator]()))
    for (const it of open) expect((await it.next()).done).toBe(false)
    expect(await r.capacity()).toEqual({ slots: 2, busy: 2 }) // llama-server's own /slots
    expect(r.state).toBe('ready') // the runner counts nothing: admission does
    for (const it of open) await it.return?.()
    await waitFor('slots released', async () => (await r.capacity()).busy === 0)

    const [ta, tb] = await Promise.all([readAll(await r.infer('/v1/chat/completions', chat(40))), readAll(await r.infer('/v1/chat/completions', chat(40)))])
    for (const t of [ta, tb]) {
      expect(t.trim().endsWith('data: [DONE]')).toBe(true)
      expect(t).toContain('chat.completion.chunk')
    }
    expect(states).not.toContain('busy')
    const metrics = await r.metrics()
    expect(metrics['llamacpp:tokens_predicted_total']).toBeGreaterThan(0)
    expect(r.info()).toMatchObject({ id: 't-llama', kind: 'llama-server', model: 'tiny', state: 'ready', slots: 2 })
  })

  it('reads a fast token stream in batches (paced), losing nothing', async () => {
    const r = track(new LlamaServerRunner({ id: 't-paced', binary: llamaServer, modelPath: model, modelName: 'tiny', slots: 1, ctxSize: 1024, logger, ...quick }))
    await r.start()
    const started = performance.now()
    const res = await r.infer('/v1/chat/completions', { ...chat(300), ignore_eos: true })
    let reads = 0
    let text = ''
    for await (const chunk of res.body) {
      reads++
      text += Buffer.from(chunk).toString()
    }
    const elapsed = performance.now() - started
    const tokens = text.split('\n\n').filter((e) => e.startsWith('data: {') && e.includes('"content"')).length
    expect(text.trim().endsWith('data: [DONE]')).toBe(true)
    // (fewer chunks than max_tokens: llama-server sends the byte tokens of one character together)
    expect(tokens).toBeGreaterThan(150)
    // llama-server writes a chunk per token; paced, the body delivers the first at once, then at
    // most one batch per window, and what is held at the end: however fast or slow the machine.
    // Read as they came, this stream gave 149 reads in 197 ms (measured), far above that bound
    expect(reads).toBeLessThanOrEqual(2 + Math.ceil(elapsed / STREAM_COALESCE_MS))
    expect(reads).toBeLessThan(tokens)
  })

  it('kill -9 mid-stream: the client gets a clear error and the runner comes back on its own', async () => {
    const r = track(new LlamaServerRunner({ id: 't-crash', binary: llamaServer, modelPath: model, modelName: 'tiny', slots: 1, ctxSize: 2048, logger, ...quick }))
    await r.start()
    const pid = r.pid!
    const res = await r.infer('/v1/chat/completions', { ...chat(100_000), ignore_eos: true })
    let err: unknown
    let chunks = 0
    try {
      for await (const _ of res.body) {
        if (++chunks === 3) process.kill(pid, 'SIGKILL')
      }
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(LlmeshError)
    expect((err as LlmeshError).code).toBe('RUNNER_FAILED')
    expect((err as LlmeshError).message).toMatch(/t-crash/)
    await waitFor('restart', () => r.state === 'ready' && r.restarts >= 1)
    expect(r.pid).not.toBe(pid)
    expect(r.info().lastError).toMatch(/SIGKILL/)
    const again = await readAll(await r.infer('/v1/chat/completions', chat(4)))
    expect(again).toContain('[DONE]')
  })

  it('a stream with no token for stallTimeoutMs is aborted with STALLED; repeated stalls restart the runner', async () => {
    const r = track(new LlamaServerRunner({
      id: 't-stall', binary: llamaServer, modelPath: model, modelName: 'tiny', slots: 1, ctxSize: 2048, logger,
      ...quick, healthIntervalMs: 60_000, stallTimeoutMs: 400, stallsBeforeUnhealthy: 2
    }))
    await r.start()
    const pid = r.pid!
    for (let i = 0; i < 2; i++) {
      const res = await r.infer('/v1/chat/completions', { ...chat(100_000), ignore_eos: true })
      let err: unknown
      let chunks = 0
      try {
        for await (const _ of res.body) {
          if (++chunks === 2) process.kill(pid, 'SIGSTOP')
        }
      } catch (e) {
        err = e
      }
      try { process.kill(pid, 'SIGCONT') } catch {}
      expect((err as LlmeshError).code).toBe('STALLED')
      expect((err as LlmeshError).message).toMatch(/no token for 400 ms/)
    }
    // the second stall in a row marks it failed; it restarts as a new process
    await waitFor('restart after stalls', () => r.state === 'ready' && r.restarts >= 1)
    expect(r.info().lastError).toMatch(/stalled 2 times/)
    expect(r.pid).not.toBe(pid)
  })
})

describe('runner manager with llama-server', () => {
  it('serves two models on one host on different ports, reusing each runner across requests', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'llmesh-runners-'))
    cleanups.push(async () => { await rm(dir, { recursive: true, force: true }) })
    const second = join(dir, 'second.gguf')
    await copyFile(model, second)
    const manager = new RunnerManager({
      logger, idPrefix: 'h1', slots: 1, ctxSize: 1024, probeGpus: false,
      llamaServer: { binary: llamaServer },
      models: [{ path: model, name: 'tiny' }, { path: second }]
    })
    cleanups.push(async () => { await manager.stop() })
    let changes = 0
    manager.onChange(() => { changes++ })
    await manager.start()
    for (const r of manager.runners()) track(r)
    await manager.waitReady(30_000)
    expect(changes).toBeGreaterThan(0)
    const runners = manager.runners() as LlamaServerRunner[]
    expect(runners.map((r) => r.model).sort()).toEqual(['second', 'tiny'])
    expect(new Set(runners.map((r) => r.port)).size).toBe(2)
    expect(manager.models().map((m) => m.name).sort()).toEqual(['second', 'tiny'])
    expect(manager.models()[0]).toMatchObject({ architecture: 'llama', layers: 2 })
    expect(JSON.stringify(manager.models())).not.toContain(dir) // no local paths published

    const pidsBefore = runners.map((r) => r.pid)
    for (const name of ['tiny', 'second', 'tiny']) {
      const res = await manager.infer(name, '/v1/chat/completions', chat(3, false))
      const body = JSON.parse(await readAll(res)) as { object: string, model: string }
      expect(body).toMatchObject({ object: 'chat.completion', model: name })
    }
    expect(runners.map((r) => r.pid)).toEqual(pidsBefore) // reused, never one per request
    await expect(manager.infer('nope', '/v1/chat/completions', chat(1))).rejects.toMatchObject({ code: 'MODEL_NOT_FOUND' })
    expect((await manager.ensure('tiny')).id).toBe(runners.find((r) => r.model === 'tiny')!.id)
  })
})

describe('rpc-server runner', () => {
  it('binds the given address on an allocated port, is live by TCP connect + process, and holds layers for a coordinator', async () => {
    const rpc = track(new RpcServerRunner({ id: 't-rpc', binary: rpcServer, host: '127.0.0.1', threads: 1, logger, ...quick }))
    await rpc.start()
    expect(rpc.port).toBeGreaterThan(0)
    expect(rpc.info()).toMatchObject({ kind: 'rpc-server', state: 'ready', endpoint: `127.0.0.1:${rpc.port}` })
    expect((await rpc.health()).ok).toBe(true)
    await expect(rpc.infer()).rejects.toMatchObject({ code: 'INVALID_REQUEST' })

    const coordinator = track(new LlamaServerRunner({ id: 't-coord', binary: llamaServer, modelPath: model, modelName: 'tiny', slots: 1, ctxSize: 512, rpc: [rpc.endpoint], logger, ...quick }))
    await coordinator.start()
    const text = await readAll(await coordinator.infer('/v1/chat/completions', chat(4)))
    expect(text).toContain('[DONE]')
    await coordinator.stop()

    const pid = rpc.pid!
    process.kill(pid, 'SIGKILL')
    await waitFor('rpc-server restart', () => rpc.state === 'ready' && rpc.restarts >= 1)
    expect(rpc.pid).not.toBe(pid)
  })

  it('refuses a wildcard bind address (rpc-server has no auth)', () => {
    expect(() => new RpcServerRunner({ id: 'x', binary: rpcServer, host: '0.0.0.0', logger })).toThrow(/mesh-private/)
  })
})
