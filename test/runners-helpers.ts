/** Shared bits of the runners' multi-process tests. */
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
