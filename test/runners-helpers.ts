/** Shared bits of the runners' multi-process tests. */
import { afterAll, afterEach } from 'vitest'
import { pino, type Logger } from 'pino'

export * from '@llmesh/runners'

export function silentLogger (): Logger {
  return pino({ level: 'silent' })
}

export async function waitFor (what: string, fn: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await fn()) return
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error(`timed out waiting for ${what}`)
}

const decoder = new TextDecoder()

/** Reads a runner response body to its end as text. */
export async function readAll (res: { body: AsyncIterable<Uint8Array> }): Promise<string> {
  let text = ''
  for await (const chunk of res.body) text += decoder.decode(chunk, { stream: true })
  return text
}

/** Fast supervision for tests: restart at once, health every 200 ms. */
export const QUICK_SUPERVISION = { restart: { minDelayMs: 50, maxDelayMs: 200, jitter: 0 }, healthIntervalMs: 200, healthTimeoutMs: 1000, healthFailures: 2 }

/**
 * What a test file starts and must stop: `cleanups` run after each test (last first), and every
 * pid in `pids` is killed after the file, belt and braces, so no process outlives its tests.
 */
export function processCleanup (): { cleanups: Array<() => Promise<void>>, pids: Set<number> } {
  const cleanups: Array<() => Promise<void>> = []
  const pids = new Set<number>()
  afterEach(async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn().catch(() => {})
  })
  afterAll(() => {
    for (const pid of pids) { try { process.kill(pid, 'SIGKILL') } catch {} }
  })
  return { cleanups, pids }
}
