import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { ErrorCodes, LlmeshError, toLlmeshError } from './errors.js'

describe('error catalogue', () => {
  it('is documented in the README, code by code, with its status', () => {
    const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8')
    for (const [code, { status }] of Object.entries(ErrorCodes)) {
      expect(readme, `README lacks \`${code.toLowerCase()}\``).toContain(`\`${code.toLowerCase()}\``)
      expect(readme).toContain(String(status))
    }
  })

  it('keeps code and cause, and maps anything thrown to a catalogue code', () => {
    const cause = new Error('socket hang up')
    const e = new LlmeshError('PEER_UNREACHABLE', 'peer gone', { cause })
    expect([e.code, e.status, e.type, e.cause]).toEqual(['PEER_UNREACHABLE', 502, 'server_error', cause])
    expect(toLlmeshError(e)).toBe(e)
    expect(toLlmeshError('boom')).toMatchObject({ code: 'INTERNAL', message: 'boom' })
    expect(toLlmeshError(cause, 'RUNNER_FAILED')).toMatchObject({ code: 'RUNNER_FAILED', cause })
  })
})
