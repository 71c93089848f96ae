import { access, constants } from 'node:fs/promises'
import { delimiter, dirname, join } from 'node:path'

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
  const given = await configuredOrEnv('llama-server', configured, 'LLMESH_LLAMA_SERVER')
  if (given != null) return given
  for (const dir of (process.env['PATH'] ?? '').split(delimiter)) {
    if (dir === '') continue
    const candidate = join(dir, 'llama-server')
    if (await executable(candidate)) return candidate
  }
  return undefined
}

/** rpc-server's names: recent llama.cpp builds `ggml-rpc-server`, older ones `rpc-server`. */
const RPC_SERVER_NAMES = ['ggml-rpc-server', 'rpc-server']

/**
 * The rpc-server binary to use: the configured one (which must exist), else
 * $LLMESH_RPC_SERVER, else one beside the llama-server binary (a llama.cpp build puts them
 * together), else on PATH, else undefined (this host holds no blocks of split models).
 */
export async function findRpcServer (configured: string | undefined, llamaServer: string | undefined): Promise<string | undefined> {
  const given = await configuredOrEnv('rpc-server', configured, 'LLMESH_RPC_SERVER')
  if (given != null) return given
  const dirs = [...(llamaServer != null ? [dirname(llamaServer)] : []), ...(process.env['PATH'] ?? '').split(delimiter).filter((d) => d !== '')]
  for (const dir of dirs) {
    for (const name of RPC_SERVER_NAMES) {
      const candidate = join(dir, name)
      if (await executable(candidate)) return candidate
    }
  }
  return undefined
}

/** The binary the config names, else the one the environment variable names; each must be executable. */
async function configuredOrEnv (what: string, configured: string | undefined, envName: string): Promise<string | undefined> {
  if (configured != null) {
    if (!await executable(configured)) throw new Error(`${what} binary '${configured}' is not an executable file`)
    return configured
  }
  const fromEnv = process.env[envName]
  if (fromEnv != null && fromEnv !== '') {
    if (!await executable(fromEnv)) throw new Error(`${envName}='${fromEnv}' is not an executable file`)
    return fromEnv
  }
  return undefined
}
