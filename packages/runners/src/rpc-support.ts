import { execFile } from 'node:child_process'
import { RPC_PROBE_TIMEOUT_MS } from './constants.js'

/**
 * Whether a llama-server binary can reach rpc-servers: llama.cpp lists `--rpc` in its help only
 * when built with the RPC backend. One run of `--help` at the agent's start (it loads no model);
 * a binary that fails or hangs counts as without.
 */
export async function supportsRpc (llamaServer: string, timeoutMs = RPC_PROBE_TIMEOUT_MS): Promise<boolean> {
  return await new Promise((resolve) => {
    execFile(llamaServer, ['--help'], { timeout: timeoutMs, maxBuffer: 4 * 1024 * 1024, windowsHide: true }, (_err, stdout, stderr) => {
      resolve(/(^|\s)--rpc(\s|,|$)/m.test(`${stdout}\n${stderr}`))
    })
  })
}
