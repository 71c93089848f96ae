import { execFile } from 'node:child_process'
import { mkdtemp, readFile, realpath, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

const run = promisify(execFile)
const ROOT = new URL('../../../', import.meta.url).pathname

/**
 * scripts/install.mjs into a temporary npm prefix (npm_config_prefix): the machine's global
 * prefix is never touched. Runs on the built workspace (--skip-build: the e2e lane builds first).
 */
describe('scripts/install.mjs puts llmesh on the PATH', () => {
  let dir: string
  beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'llmesh-install-')) })
  afterAll(async () => { await rm(dir, { recursive: true, force: true }) })

  it('installs a self-contained llmesh that answers --version, -v and config check', async () => {
    const prefix = join(dir, 'prefix')
    const deploys = join(dir, 'deploys')
    const env = { ...process.env, npm_config_prefix: prefix, npm_config_update_notifier: 'false' }
    const installed = await run(process.execPath, [join(ROOT, 'scripts/install.mjs'), '--skip-build', '--dir', deploys], { cwd: ROOT, env, timeout: 180_000 })
    const bin = join(prefix, 'bin', 'llmesh')
    expect(installed.stdout).toContain(`installed: ${bin} -> `)

    const { version } = JSON.parse(await readFile(join(ROOT, 'packages/cli/package.json'), 'utf8')) as { version: string }
    expect((await run(bin, ['--version'], { timeout: 30_000 })).stdout).toBe(`${version}\n`)
    expect((await run(bin, ['-v'], { timeout: 30_000 })).stdout).toBe(`${version}\n`)
    // the installed copy lives in the deploy dir, not in the clone: moving the clone leaves it working
    const target = await realpath(bin)
    expect(target.startsWith(await realpath(deploys))).toBe(true)
    expect(target.startsWith(ROOT)).toBe(false)
    // the whole CLI loads from there (the agent, zod, libp2p): a config check through it
    const config = join(dir, 'config.json')
    await writeFile(config, JSON.stringify({ name: 'gpu1', p2p: { bootstrap: ['garbage'] } }))
    const bad = await run(bin, ['config', 'check', config], { timeout: 30_000 }).then(() => undefined, (err: { code: number, stderr: string }) => err)
    expect(bad?.code).toBe(1)
    expect(bad?.stderr.startsWith(`${config}: p2p.bootstrap.0 'garbage': not a multiaddr`)).toBe(true)

    // a second install replaces the link; the deploy before it is kept for a service still running it
    await run(process.execPath, [join(ROOT, 'scripts/install.mjs'), '--skip-build', '--dir', deploys], { cwd: ROOT, env, timeout: 180_000 })
    expect(await realpath(bin)).not.toBe(target)
    expect((await run(bin, ['--version'], { timeout: 30_000 })).stdout).toBe(`${version}\n`)
  }, 420_000)
})
