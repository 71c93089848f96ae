import { ensureLlamaCpp, ensureTinyModel } from '@llmesh/fixtures'

/**
 * Makes the fixtures every multi-process test needs (cached after the first run) and hands
 * their paths to the test files through the environment.
 */
export default async function setup (): Promise<void> {
  const progress = (line: string): void => { process.stdout.write(`[fixtures] ${line}\n`) }
  const build = await ensureLlamaCpp(progress)
  process.env['LLMESH_TEST_LLAMA_SERVER'] = build.llamaServer
  process.env['LLMESH_TEST_RPC_SERVER'] = build.rpcServer
  process.env['LLMESH_TEST_MODEL'] = await ensureTinyModel(progress)
}
