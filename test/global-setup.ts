import { ensureChromium, ensureLlamaCpp, ensureTinyModel } from '@llmesh/fixtures'

/**
 * The e2e lane's global setup (the unit lane has none): makes the fixtures every multi-process
 * test needs (cached after the first run) and hands their paths to the test files through the
 * environment. The only place a test run builds llama.cpp, writes the tiny model or installs
 * the browser of the dashboard's test.
 */
export default async function setup (): Promise<void> {
  const progress = (line: string): void => { process.stdout.write(`[fixtures] ${line}\n`) }
  const build = await ensureLlamaCpp(progress)
  process.env['LLMESH_TEST_LLAMA_SERVER'] = build.llamaServer
  process.env['LLMESH_TEST_RPC_SERVER'] = build.rpcServer
  process.env['LLMESH_TEST_MODEL'] = await ensureTinyModel(progress)
  // the dashboard's browser test: the browser's path, or why it skips
  const chromium = ensureChromium(progress)
  if ('path' in chromium) {
    process.env['LLMESH_TEST_CHROMIUM'] = chromium.path
  } else {
    process.env['LLMESH_TEST_CHROMIUM_SKIP'] = chromium.skip
    progress(`the dashboard's browser test (test/ui.test.ts) will be skipped: ${chromium.skip}`)
  }
}
