import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { AgentConfigSchema } from '@llmesh/agent'
import { configDoc, readDocComments } from './config-doc.js'

const doc = configDoc()

describe('docs/CONFIG.md', () => {
  it('is what the config schema gives (node scripts/config-doc.mjs rewrites it)', () => {
    const committed = readFileSync(new URL('../../../docs/CONFIG.md', import.meta.url), 'utf8')
    expect(committed, 'docs/CONFIG.md is stale: run node scripts/config-doc.mjs').toBe(doc)
  })

  it('has a row for every key of the schema, nested ones included', () => {
    const rows = new Set([...doc.matchAll(/^\| `([^`]+)` \|/gm)].map((m) => m[1]))
    const keys = (shape: Record<string, unknown>, prefix: string): string[] => Object.keys(shape).map((k) => `${prefix}${k}`)
    for (const key of keys(AgentConfigSchema.shape, '')) expect(rows).toContain(key)
    for (const key of ['api.port', 'p2p.bootstrap', 'membership.deadAfterMs', 'models[].path', 'placement.pins[].host', 'llamaServer.ctxSize', 'ollama.url', 'mlx.url']) expect(rows).toContain(key)
  })

  it('shows defaults from the schema, units from the key names and comments, meanings from the doc comments', () => {
    expect(doc).toContain('| `api.port` | integer ≥ 0, ≤ 65535 | `11435` |  | 0 picks a free port. |')
    expect(doc).toContain('| `queue.deadlineMs` | integer > 0 | `120000` | ms |')
    expect(doc).toContain('| `llamaServer.ctxSize` | integer ≥ 128 | `4096` | tokens |')
    // computed on the host at run time: shown as the comment says, the same on every machine
    expect(doc).toContain('| `name` | string (1–128 chars) | the host name |')
    expect(doc).not.toMatch(/"\/(root|home)\//)
  })

  it('reads comments through references to other packages\' schemas', () => {
    const d = readDocComments()
    expect(d.fields?.get('p2p')?.fields?.get('mdns')?.comment).toMatch(/multicast DNS/)
    expect(d.fields?.get('placement')?.fields?.get('pins')?.fields?.get('host')?.comment).toMatch(/peer id/)
  })
})
