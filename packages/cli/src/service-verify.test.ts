import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { STOP_HARD_LIMIT_MS } from '@llmesh/agent'
import { serviceEnv, serviceStopTimeoutMs, systemdUnit, type ServiceSpec } from './service.js'

const run = promisify(execFile)

/** systemd-analyze, if this host has it (Debian's systemd package). */
async function systemdAnalyze (): Promise<string | undefined> {
  try {
    await run('systemd-analyze', ['--version'], { timeout: 10_000 })
    return 'systemd-analyze'
  } catch {
    return undefined
  }
}

const analyze = await systemdAnalyze()
if (analyze == null) process.stdout.write('service-verify: skipped, systemd-analyze is not installed (apt-get install systemd)\n')

describe.skipIf(analyze == null)('systemd unit checked by systemd-analyze verify', () => {
  let dir: string
  beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'llmesh-unit-')) })
  afterAll(async () => { await rm(dir, { recursive: true, force: true }) })

  const spec = (config: string): ServiceSpec => ({
    node: process.execPath,
    bin: new URL('../dist/bin.js', import.meta.url).pathname,
    config,
    scope: 'system',
    env: serviceEnv({ PATH: '/usr/local/bin:/usr/bin:/bin', LLMESH_CACHE_DIR: '/var/cache/llmesh 50%' }),
    stopTimeoutMs: serviceStopTimeoutMs(5000, STOP_HARD_LIMIT_MS)
  })

  /** verify's exit code and what it said (it never loads or starts the unit). */
  async function verify (unit: string): Promise<{ ok: boolean, output: string }> {
    const file = join(dir, 'llmesh.service')
    await writeFile(file, unit)
    try {
      const { stdout, stderr } = await run('systemd-analyze', ['verify', '--man=no', file], { timeout: 30_000 })
      return { ok: true, output: `${stdout}${stderr}` }
    } catch (err) {
      const e = err as { stdout?: string, stderr?: string }
      return { ok: false, output: `${e.stdout ?? ''}${e.stderr ?? ''}` }
    }
  }

  it('accepts the generated unit without a warning', async () => {
    const config = join(dir, 'config.json')
    await writeFile(config, '{}')
    const result = await verify(systemdUnit({ ...spec(config), scope: 'user' }))
    expect(result).toEqual({ ok: true, output: '' })
    expect(await verify(systemdUnit(spec(config)))).toEqual({ ok: true, output: '' })
  })

  it('is a real check: a unit whose ExecStart is no program fails it', async () => {
    const unit = systemdUnit(spec(join(dir, 'config.json'))).replace(/^ExecStart="[^"]+"/m, 'ExecStart="/nonexistent/node"')
    const result = await verify(unit)
    expect(result.ok).toBe(false)
    expect(result.output).toMatch(/nonexistent\/node/)
  })
})
