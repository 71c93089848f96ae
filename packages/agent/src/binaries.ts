import { access, constants } from 'node:fs/promises'
import { delimiter, join } from 'node:path'

async function executable (path: string): Promise<boolean> {
  try {
    await access(path, constants.X_OK)
    return true
  } catch {
    return false
  }
}

/**
 * The llama-server binary to use: the configured one (which must exist), else
 * $LLMESH_LLAMA_SERVER, else `llama-server` on PATH, else undefined (embedded llama.cpp).
 */
export async function findLlamaServer (configured?: string): Promise<string | undefined> {
  if (configured != null) {
    if (!await executable(configured)) throw new Error(`llama-server binary '${configured}' is not an executable file`)
    return configured
  }
  const fromEnv = process.env['LLMESH_LLAMA_SERVER']
  if (fromEnv != null && fromEnv !== '') {
    if (!await executable(fromEnv)) throw new Error(`LLMESH_LLAMA_SERVER='${fromEnv}' is not an executable file`)
    return fromEnv
  }
  for (const dir of (process.env['PATH'] ?? '').split(delimiter)) {
    if (dir === '') continue
    const candidate = join(dir, 'llama-server')
    if (await executable(candidate)) return candidate
  }
  return undefined
}
