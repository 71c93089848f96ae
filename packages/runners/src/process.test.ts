import { once } from 'node:events'
import { describe, expect, it } from 'vitest'
import { STDOUT_LINE_MAX_CHARS } from './constants.js'
import { RunnerProcess } from './process.js'

async function stdoutClosed (proc: RunnerProcess): Promise<void> {
  await once(proc.child.stdout!, 'close')
}

describe('RunnerProcess io', () => {
  it('hands over stdout line by line, drops a line over the cap, and sets and removes variables', async () => {
    process.env['LLMESH_TEST_REMOVED'] = 'inherited'
    const lines: string[] = []
    const script = `printf 'a\\n'; head -c ${STDOUT_LINE_MAX_CHARS + 1} /dev/zero | tr '\\0' x; printf '\\nb:%s:%s\\n' "$LLMESH_TEST_SET" "\${LLMESH_TEST_REMOVED-unset}"; printf 'partial'`
    const proc = new RunnerProcess('/bin/sh', ['-c', script], {}, {
      env: { LLMESH_TEST_SET: 'set', LLMESH_TEST_REMOVED: undefined },
      onStdoutLine: (line) => { lines.push(line) }
    })
    await Promise.all([proc.exited, stdoutClosed(proc)])
    delete process.env['LLMESH_TEST_REMOVED']
    expect(lines).toEqual(['a', 'b:set:unset'])
  })

  it('keeps stdin open until kill, which writes the farewell line and closes it', async () => {
    const lines: string[] = []
    let ready: () => void = () => {}
    const trapped = new Promise<void>((resolve) => { ready = resolve })
    // deaf to SIGTERM (once it says so): ends only when stdin gives a line or ends
    const proc = new RunnerProcess('/bin/sh', ['-c', 'trap "" TERM; echo ready; read line; echo "got:$line"; exit 3'], {}, {
      stdin: { farewell: 'bye' },
      onStdoutLine: (line) => { lines.push(line); if (line === 'ready') ready() }
    })
    const closed = stdoutClosed(proc)
    await trapped
    await proc.kill(60_000)
    await closed
    expect(lines).toEqual(['ready', 'got:bye'])
    expect(proc.exit).toEqual({ code: 3, signal: null })
  })
})
