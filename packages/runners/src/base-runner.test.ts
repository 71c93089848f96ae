import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { pino } from 'pino'
import { LlmeshError, type RunnerInfo, type RunnerState } from '@llmesh/protocol'
import { BaseRunner, type RunnerCommonInit, type UpstreamResponse } from './base-runner.js'
import { LOAD_PROGRESS_STEP, RESTART_RESET_AFTER_MS } from './constants.js'

/**
 * The supervision of BaseRunner, through an adapter whose engine is a script: a launch fails or
 * succeeds as told, and reports the load progress it is given. Timers are fake, so restarts and
 * the time a runner stays ready are stepped, not waited for.
 */
class ScriptedRunner extends BaseRunner {
  readonly kind = 'embedded' as const
  readonly model = 'm'
  launches = 0
  /** launches from this many on succeed (0: all) */
  failFirst = 0
  /** progress values each launch reports before it succeeds */
  progress: number[] = []

  protected async launch (): Promise<void> {
    this.launches++
    this.setState('loading')
    for (const p of this.progress) this.setProgress(p)
    if (this.launches <= this.failFirst) throw new LlmeshError('RUNNER_FAILED', `launch ${this.launches} failed`)
  }

  protected async shutdown (): Promise<void> {}
  protected async check (): Promise<string | undefined> { return undefined }
  protected async open (): Promise<UpstreamResponse> { throw new Error('not served') }
  protected override stderrTail (): string { return `tail of launch ${this.launches}` }

  /** the engine dies while ready */
  crash (): void { this.fail('engine died') }
}

const common: RunnerCommonInit = { id: 'r', logger: pino({ level: 'silent' }), restart: { minDelayMs: 10, maxDelayMs: 10, jitter: 0 }, healthIntervalMs: 3_600_000 }

beforeEach(() => { vi.useFakeTimers() })
afterEach(() => { vi.useRealTimers() })

describe('a runner that keeps failing', () => {
  it('stops restarting after crashLoopFailures failed starts: failed for good, with why and its stderr tail', async () => {
    const r = new ScriptedRunner({ ...common, crashLoopFailures: 3 })
    r.failFirst = Infinity
    await expect(r.start()).rejects.toThrow('launch 1 failed')
    await vi.advanceTimersByTimeAsync(60 * 60_000)
    expect(r.launches).toBe(3)
    expect(r.state).toBe('failed')
    expect(r.lastError).toBe('gave up after 3 failures in a row: start failed: launch 3 failed')
    expect(r.describe()).toMatchObject({ gaveUp: true, stderrTail: 'tail of launch 3', restarts: 2 })

    // start() again is a new series of tries
    r.failFirst = 0
    await r.start()
    expect(r.state).toBe('ready')
    expect(r.describe().gaveUp).toBeUndefined()
    expect(r.describe().stderrTail).toBeUndefined()
  })

  it('counts only failures in a row: being ready for RESTART_RESET_AFTER_MS starts the count again', async () => {
    const r = new ScriptedRunner({ ...common, crashLoopFailures: 2 })
    await r.start()
    r.crash()
    await vi.advanceTimersByTimeAsync(10)
    expect(r.state).toBe('ready')
    await vi.advanceTimersByTimeAsync(RESTART_RESET_AFTER_MS)
    r.crash()
    await vi.advanceTimersByTimeAsync(10)
    expect(r.state).toBe('ready') // a new count: this was its first failure

    r.crash() // the second in a row, ready only briefly in between
    await vi.advanceTimersByTimeAsync(60 * 60_000)
    expect(r.state).toBe('failed')
    expect(r.describe().gaveUp).toBe(true)
    expect(r.lastError).toMatch(/^gave up after 2 failures in a row: engine died/)
  })

  it('with restarts off, the first failure is for good', async () => {
    const r = new ScriptedRunner({ ...common, restart: false })
    await r.start()
    r.crash()
    await vi.advanceTimersByTimeAsync(60_000)
    expect(r.launches).toBe(1)
    expect(r.describe()).toMatchObject({ state: 'failed', gaveUp: true, lastError: 'engine died' })
  })
})

describe('load progress', () => {
  it('is published in steps of LOAD_PROGRESS_STEP while loading, and cleared when ready', async () => {
    const r = new ScriptedRunner(common)
    r.progress = Array.from({ length: 1001 }, (_, i) => i / 1000)
    const seen: Array<{ state: RunnerState, info: RunnerInfo }> = []
    r.onState((state, info) => { seen.push({ state, info }) })
    await r.start()
    const loading = seen.filter((s) => s.state === 'loading').map((s) => s.info.progress)
    expect(loading[0]).toBeUndefined() // 'loading' before the engine said anything
    const values = loading.slice(1) as number[]
    expect(values.length).toBeLessThanOrEqual(Math.ceil(1 / LOAD_PROGRESS_STEP) + 1)
    // a step at least LOAD_PROGRESS_STEP each, but the last: the end of the load is always told
    for (let i = 1; i < values.length - 1; i++) expect(values[i]! - values[i - 1]!).toBeGreaterThanOrEqual(LOAD_PROGRESS_STEP - 1e-9)
    expect(values.at(-1)).toBe(1)
    expect(values.at(-2)).toBeLessThan(1)
    expect(r.state).toBe('ready')
    expect(r.info().progress).toBeUndefined()
  })

  it('from a runner still starting, moves it to loading; ignored once ready', async () => {
    const r = new ScriptedRunner(common)
    r.progress = [0.5]
    const states: RunnerState[] = []
    r.onState((s) => { states.push(s) })
    await r.start()
    expect(states).toEqual(['starting', 'loading', 'loading', 'ready'])
    ;(r as unknown as { setProgress: (p: number) => void }).setProgress(0.9)
    expect(r.info().progress).toBeUndefined()
  })
})
