import { describe, expect, it } from 'vitest'
import { formatStatus, type StatusData } from './commands.js'
import { formatApiKeys } from './apikey.js'
import { terminalSafe, terminalSafeJson, terminalSafeJsonLine, terminalSafeText } from './terminal.js'

/** Any character a terminal acts on instead of showing (C0, DEL, C1, bidi controls), but the line breaks the output has. */
const CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/u

describe('peer strings on the terminal', () => {
  it('escapes controls, C1, DEL and bidi overrides; leaves other text as it is', () => {
    expect(terminalSafe('gpu1 ünï 中文 🙂')).toBe('gpu1 ünï 中文 🙂')
    expect(terminalSafe('a\u001b[2J\u001b]0;pwned\u0007b')).toBe('a\\x1b[2J\\x1b]0;pwned\\x07b')
    expect(terminalSafe('\r\n\t\u007f\u009b')).toBe('\\x0d\\x0a\\x09\\x7f\\x9b')
    expect(terminalSafe('abc\u202edcba')).toBe('abc\\u202edcba')
  })

  it('llmesh status prints a hostile peer name, model and address escaped, columns intact', () => {
    const evil = 'evil\u001b[2J\u001b[31mred\u009b1m\u202e'
    const data: StatusData = {
      via: 'http://127.0.0.1:11435',
      self: 'p-self',
      nodes: [
        { name: 'me', peerId: '12D3KooWaaaaaaaaaaaa', self: true, connected: true, state: 'alive', heartbeatAgeMs: 0, load: null, api: '127.0.0.1:11435', models: [], runners: [] },
        { name: evil, peerId: '12D3KooW\u001bbbbbbbbbb', self: false, connected: true, state: 'alive', heartbeatAgeMs: 100, load: null, api: `1.2.3.4\u0007`, models: [`m\u001b]8;;http://x\u0007`], runners: [{ id: 'r', model: 'm\r', state: 'ready', slots: 1 }] }
      ],
      placements: [{ model: `m\u001b[2J`, host: evil, state: 'failed', reason: 'request', error: 'bad\u001b[31m\nsecond line' }],
      pins: [{ model: `p\u0007`, host: evil }]
    }
    const out = formatStatus(data)
    expect(out).not.toMatch(CONTROL)
    const row = out.split('\n')[3]!.split(/\s{2,}/)
    expect(row[0]).toBe('evil\\x1b[2J\\x1b[31mred\\x9b1m\\u202e')
    expect(row).toHaveLength(10)
    expect(out).toContain('placements:')
    expect(out).toContain('pins: p\\x07@evil')
    const json = terminalSafeJson(data)
    expect(json).not.toMatch(CONTROL)
    expect(JSON.parse(json)).toEqual(data)
  })

  it('llmesh apikey list escapes names read from the file', () => {
    expect(formatApiKeys([{ id: '0123abcd', name: 'x\u001b[2J', createdAt: '2026-11-30T00:00:00.000Z' }])).not.toMatch(CONTROL)
  })

  it('a model\'s answer keeps its line breaks and tabs, nothing else; JSON lines are one line each', () => {
    expect(terminalSafeText('line 1\n\tline 2\u001b[2J\r\u202e')).toBe('line 1\n\tline 2\\x1b[2J\\x0d\\u202e')
    const line = terminalSafeJsonLine({ reply: 'a\nb\u009b\u202e' })
    expect(line).not.toMatch(/\n/)
    expect(line).not.toMatch(CONTROL)
    expect(JSON.parse(line)).toEqual({ reply: 'a\nb\u009b\u202e' })
  })
})
