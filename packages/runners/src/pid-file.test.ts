import { afterEach, describe, expect, it } from 'vitest'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { formatPidFile, parentDeathPrefix, processStartTime, readPidFile, reapRunners } from './pid-file.js'

const children: ChildProcess[] = []
afterEach(() => {
  for (const c of children.splice(0)) { try { c.kill('SIGKILL') } catch {} }
})

function sleeper (): ChildProcess {
  const c = spawn('/bin/sleep', ['300'], { stdio: 'ignore' })
  children.push(c)
  return c
}

function alive (pid: number): boolean {
  try { process.kill(pid, 0); return true } catch { return false }
}

describe.runIf(process.platform === 'linux')('reapRunners', () => {
  it('kills a recorded survivor and nothing whose start time or command line differs', async () => {
    const survivor = sleeper()
    const other = sleeper()
    const exited = new Promise((resolve) => survivor.once('exit', resolve))
    const start = (await processStartTime(survivor.pid!))!
    const otherStart = (await processStartTime(other.pid!))!
    const reaped = await reapRunners([
      { pid: survivor.pid!, binary: '/bin/sleep', startTime: start },
      // the same pid seen with another start time: a reused pid, not ours
      { pid: other.pid!, binary: '/bin/sleep', startTime: String(Number(otherStart) + 1) },
      // the right start time but another binary: not ours either
      { pid: other.pid!, binary: '/usr/bin/llama-server', startTime: otherStart }
    ])
    expect(reaped).toEqual([survivor.pid])
    await exited
    expect(alive(other.pid!)).toBe(true)
  })

  it('reads back what it writes and reads a damaged file as empty', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'llmesh-pids-'))
    try {
      const file = join(dir, 'runners.pid')
      const content = { agent: { pid: 4141, startTime: '99' }, runners: [{ pid: 4242, binary: '/x/llama-server', startTime: '123' }] }
      await writeFile(file, formatPidFile(content))
      expect(await readPidFile(file)).toEqual(content)
      await writeFile(file, '{"runners": [{"pid": 1, "binary": "/sbin/init", "startTime": "1"}, {"pid": "x"}]')
      expect(await readPidFile(file)).toEqual({ runners: [] })
      await writeFile(file, '{"agent": {"pid": 77}, "runners": [{"pid": 1, "binary": "/sbin/init", "startTime": "1"}')
      expect(await readPidFile(file)).toEqual({ runners: [] })
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('finds setpriv with --pdeathsig, and a child spawned through it dies with its parent', async (ctx) => {
    const prefix = await parentDeathPrefix()
    if (prefix == null) return ctx.skip('no setpriv with --pdeathsig on this host')
    expect(prefix.slice(1)).toEqual(['--pdeathsig', 'KILL', '--'])
    // a parent shell starts a grandchild under setpriv, prints its pid, then is SIGKILLed
    const parent = spawn('/bin/sh', ['-c', `${prefix.join(' ')} /bin/sleep 300 & echo $!; wait`], { stdio: ['ignore', 'pipe', 'ignore'] })
    children.push(parent)
    const pid = await new Promise<number>((resolve) => parent.stdout!.once('data', (b: Buffer) => { resolve(Number(b.toString().trim())) }))
    // setpriv sets the signal, then execs: once the pid runs sleep, the signal is armed
    const armedBy = Date.now() + 2000
    while (!(await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).startsWith('/bin/sleep') && Date.now() < armedBy) {
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
    expect(alive(pid)).toBe(true)
    parent.kill('SIGKILL')
    const deadline = Date.now() + 2000
    while ((await processStartTime(pid)) != null && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
    expect(await processStartTime(pid)).toBeUndefined()
  })
})
