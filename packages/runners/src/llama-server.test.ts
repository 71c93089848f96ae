import { describe, expect, it } from 'vitest'
import type { Logger } from 'pino'
import { LlamaServerRunner } from './llama-server.js'
import { RunnerManager } from './manager.js'
import { parentDeathPrefix } from './pid-file.js'

function silent (): Logger {
  const noop = (): void => {}
  const l: Record<string, unknown> = { info: noop, warn: noop, error: noop, debug: noop, trace: noop, fatal: noop }
  l['child'] = () => l
  return l as unknown as Logger
}

describe('llama-server runner without a binary', () => {
  it('fails to start with a clear error and does not restart (the binary will not appear by retrying)', async () => {
    const r = new LlamaServerRunner({ id: 'x', binary: '/nonexistent/llama-server', modelPath: '/nonexistent.gguf', modelName: 'm', logger: silent(), restart: { minDelayMs: 1 } })
    await expect(r.start()).rejects.toMatchObject({ code: 'RUNNER_FAILED', message: expect.stringMatching(/could not be started \(ENOENT\)/) })
    await new Promise((resolve) => setTimeout(resolve, 50))
    expect(r.state).toBe('failed')
    expect(r.restarts).toBe(0)
    expect(r.info().lastError).toMatch(/ENOENT/)
    await expect(r.infer('/v1/chat/completions', {})).rejects.toMatchObject({ code: 'NO_CAPACITY' })
    await r.stop()
    expect(r.state).toBe('stopped')
  })

  it('says the same through the parent-death prefix (setpriv), where the exec fails in setpriv', async (ctx) => {
    const prefix = await parentDeathPrefix()
    if (prefix == null) return ctx.skip('no setpriv with --pdeathsig on this host')
    const r = new LlamaServerRunner({ id: 'x', binary: '/nonexistent/llama-server', modelPath: '/nonexistent.gguf', modelName: 'm', logger: silent(), restart: { minDelayMs: 1 }, spawn: { parentDeathPrefix: prefix } })
    await expect(r.start()).rejects.toMatchObject({ code: 'RUNNER_FAILED', message: expect.stringMatching(/could not be started \(ENOENT\)/) })
    await new Promise((resolve) => setTimeout(resolve, 50))
    expect([r.state, r.restarts]).toEqual(['failed', 0])
    await r.stop()
  })

  it('puts the configured flags on the command line, on the allocated port', () => {
    const r = new LlamaServerRunner({ id: 'x', binary: 'llama-server', modelPath: '/m.gguf', modelName: 'm', slots: 3, ctxSize: 2048, gpuLayers: 10, threads: 2, rpc: ['10.0.0.2:5000', '10.0.0.3:5000'], logger: silent() })
    expect(r.args(4242).join(' ')).toBe('-m /m.gguf --alias m --host 127.0.0.1 --port 4242 --parallel 3 -c 2048 --metrics -ngl 10 -t 2 --rpc 10.0.0.2:5000,10.0.0.3:5000')
  })
})

describe('runner manager options', () => {
  it('rejects unknown keys and bad values, one line each', () => {
    expect(() => new RunnerManager({ logger: silent(), slots: 0, bogus: 1, models: [{ path: 'a', name: 'x' }, { path: 'b', name: 'x' }] } as never))
      .toThrow(/bogus: unknown option[\s\S]*slots: must be a positive number[\s\S]*name 'x' is used twice/)
  })
})
