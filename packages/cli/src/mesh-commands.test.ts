import { describe, expect, it } from 'vitest'
import type { MeshView, ViewNode } from '@llmesh/agent'
import type { PeerMetrics } from '@llmesh/protocol'
import { formatModels, formatPeers, formatPins, formatPlacements, formatPs, modelsOf, peersOf, placementsOf, psOf } from './mesh-commands.js'
import { age, bytes, count, table } from './render.js'

const TTY = { tty: true, color: true }
const NO_COLOR = { tty: true, color: false }

function node (name: string, over: Partial<ViewNode> = {}): ViewNode {
  return {
    peerId: `12D3KooW${name.padEnd(12, name.slice(-1))}`,
    name,
    version: '0.1.0',
    protocol: 1,
    addrs: [`/ip4/10.0.0.1/tcp/4778/p2p/12D3KooW${name}`],
    api: '10.0.0.1:11435',
    hardware: { cpus: 8, memBytes: 16 * 2 ** 30, platform: 'linux', arch: 'x64' },
    models: [],
    runners: [],
    startedAt: 1_700_000_000_000,
    updatedAt: 1_700_000_000_000,
    sig: 'sig',
    self: false,
    connected: true,
    state: 'alive',
    heartbeatAgeMs: 1500,
    metrics: null,
    ...over
  }
}

const metrics = (over: Partial<PeerMetrics>): PeerMetrics => ({ slotsBusy: 0, slotsTotal: 0, queueDepth: 0, tokensPerSec: 0, latencyMs: 0, successRate: 1, claims: {}, ...over })

const tiny = { name: 'tiny', sizeBytes: 3 * 2 ** 20, digest: 'd', format: 'gguf' as const, quantization: 'F16', contextLength: 4096, architecture: 'llama' }
const huge = { name: 'huge', sizeBytes: 40 * 2 ** 30, digest: 'e', format: 'gguf' as const, quantization: 'Q4_K_M', contextLength: 32768 }

const a = node('gpu-a', { self: true, heartbeatAgeMs: null, models: [tiny, huge], runners: [{ id: 'ls-1', kind: 'llama-server', model: 'tiny', state: 'ready', slots: 4 }], metrics: metrics({ tokensPerSec: 41.5, models: [{ model: 'tiny', slots: 4, busy: 3, queue: 2 }] }) })
const b = node('gpu-b', { models: [{ ...tiny, source: 'ollama' as const }], runners: [{ id: 'rpc-1', kind: 'rpc-server', model: 'huge', state: 'ready', slots: 1, restarts: 2 }] })
const c = node('gpu-c', { connected: false, state: 'suspect', heartbeatAgeMs: 125_000, version: '0.0.9' })
const split = { coordinator: a.peerId, hosts: [{ peerId: a.peerId, layers: 20, bytes: 30 * 2 ** 30 }, { peerId: b.peerId, layers: 12, bytes: 12 * 2 ** 30 }] }
const view: MeshView = {
  self: a.peerId,
  trust: { mode: 'lab', keyId: 'k' },
  nodes: [c, b, a],
  placements: [
    { peerId: a.peerId, model: 'tiny', state: 'ready', reason: 'config', footprintBytes: 512 * 2 ** 20, since: 1_700_000_000_000 },
    { peerId: a.peerId, model: 'huge', state: 'loading', reason: 'request', progress: 0.25, split, since: 1_700_000_100_000 },
    { peerId: b.peerId, model: 'huge', state: 'ready', reason: 'split', split, since: 1_700_000_050_000 },
    { peerId: c.peerId, model: 'broken', state: 'failed', reason: 'pin', error: 'exited with code 1\nbad magic', since: 1_700_000_000_000 }
  ],
  pins: [{ model: 'broken', host: c.peerId }, { model: 'tiny' }]
}

/** A plain table's rows, split into cells. */
const cells = (text: string): string[][] => text.split('\n').map((l) => l.split(/\s{2,}/))

describe('llmesh peers', () => {
  it('self first, then by name; plain columns carry the whole peer id and seconds', () => {
    const rows = peersOf(view)
    expect(rows.map((r) => [r.name, r.link, r.state])).toEqual([['gpu-a', 'self', 'alive'], ['gpu-b', 'connected', 'alive'], ['gpu-c', 'unreachable', 'suspect']])
    const t = cells(formatPeers(rows))
    expect(t[0]).toEqual(['NAME', 'PEER', 'STATE', 'LINK', 'HEARD', 'VERSION', 'API', 'ADDRESSES'])
    expect(t[1]!.slice(0, 5)).toEqual(['gpu-a (this)', a.peerId, 'alive', 'self', '-'])
    expect(t[3]).toEqual(['gpu-c', c.peerId, 'suspect', 'unreachable', '125.0s ago', '0.0.9/1', '10.0.0.1:11435', c.addrs[0]])
  })

  it('on a terminal: relative times, short ids, colour by state (and none with NO_COLOR)', () => {
    const text = formatPeers(peersOf(view), TTY)
    expect(text).toContain('\u001b[33msuspect\u001b[39m')
    expect(text).toContain('\u001b[31munreachable\u001b[39m')
    const plain = cells(formatPeers(peersOf(view), NO_COLOR))
    expect(plain[3]!.slice(0, 5)).toEqual(['gpu-c', `…${c.peerId.slice(-10)}`, 'suspect', 'unreachable', '2m ago'])
    expect(formatPeers(peersOf(view), NO_COLOR)).not.toContain('\u001b')
  })

  it('a peer\'s name cannot carry terminal escapes to the screen', () => {
    const evil = node('evil\u001b[2J\u202ename')
    const text = formatPeers(peersOf({ ...view, nodes: [evil], placements: [], pins: [] }), TTY)
    expect(text).toContain('evil\\x1b[2J\\u202ename')
    expect(text).not.toContain('\u001b[2J')
    expect(formatPeers([])).toBe('no peers')
  })
})

describe('llmesh models', () => {
  it('every model once: state, size, quantization, context, the hosts that have it, placements, pins', () => {
    const rows = modelsOf(view)
    expect(rows.map((m) => [m.name, m.state])).toEqual([['broken', 'failed'], ['huge', 'ready'], ['tiny', 'ready']])
    const t = rows.find((m) => m.name === 'tiny')!
    expect(t).toMatchObject({ sizeBytes: 3 * 2 ** 20, quantization: 'F16', contextLength: 4096, onDisk: [{ host: 'gpu-a', source: 'file' }, { host: 'gpu-b', source: 'ollama' }], pins: ['*'] })
    const h = rows.find((m) => m.name === 'huge')!
    expect(h.split).toEqual({ coordinator: 'gpu-a', hosts: [{ host: 'gpu-a', layers: 20, bytes: 30 * 2 ** 30 }, { host: 'gpu-b', layers: 12, bytes: 12 * 2 ** 30 }] })
    expect(rows.find((m) => m.name === 'broken')).toMatchObject({ sizeBytes: null, pins: ['gpu-c'], placements: [{ host: 'gpu-c', state: 'failed' }] })
  })

  it('a split model shows the blocks per host; a failure\'s first line is listed below', () => {
    const lines = formatModels(modelsOf(view)).split('\n')
    expect(cells(lines[0]!)[0]).toEqual(['NAME', 'STATE', 'SIZE', 'QUANT', 'CONTEXT', 'ON DISK', 'PLACED', 'PINNED'])
    expect(cells(lines[1]!)[0]).toEqual(['broken', 'failed', '-', '-', '-', '-', 'gpu-c:failed', 'gpu-c'])
    expect(cells(lines[2]!)[0]).toEqual(['huge', 'ready', '40.0GiB', 'Q4_K_M', '32K', 'gpu-a', 'gpu-a:loading(25%),blocks=20,gpu-b:blocks=12', '-'])
    expect(cells(lines[3]!)[0]).toEqual(['tiny', 'ready', '3.0MiB', 'F16', '4K', 'gpu-a,gpu-b(ollama)', 'gpu-a:ready', '*'])
    expect(lines.slice(4)).toEqual(['', 'failures:', '  broken@gpu-c: exited with code 1'])
    expect(formatModels([])).toBe('no models in the mesh')
  })

  it('a model only on disk is available', () => {
    const rows = modelsOf({ ...view, nodes: [node('x', { models: [tiny] })], placements: [], pins: [] })
    expect(rows).toMatchObject([{ name: 'tiny', state: 'available', placements: [], onDisk: [{ host: 'x' }] }])
  })
})

describe('llmesh ps', () => {
  it('every runner of the mesh with its model\'s slots in use, queue, the host\'s tokens/s and the placed memory', () => {
    const rows = psOf(view)
    expect(rows).toEqual([
      { host: 'gpu-a', runner: 'ls-1', model: 'tiny', kind: 'llama-server', state: 'ready', slots: 4, slotsBusy: 3, queue: 2, tokensPerSec: 41.5, memoryBytes: 512 * 2 ** 20, restarts: 0 },
      { host: 'gpu-b', runner: 'rpc-1', model: 'huge', kind: 'rpc-server', state: 'ready', slots: 1, slotsBusy: null, queue: null, tokensPerSec: null, memoryBytes: null, restarts: 2 }
    ])
    const t = cells(formatPs(rows))
    expect(t[0]).toEqual(['HOST', 'MODEL', 'KIND', 'STATE', 'SLOTS', 'QUEUE', 'TOK/S', 'MEMORY', 'RESTARTS', 'RUNNER'])
    expect(t[1]).toEqual(['gpu-a', 'tiny', 'llama-server', 'ready', '3/4', '2', '41.5', '512.0MiB', '0', 'ls-1'])
    expect(t[2]).toEqual(['gpu-b', 'huge', 'rpc-server', 'ready', '-/1', '-', '-', '-', '2', 'rpc-1'])
    expect(formatPs([])).toBe('no runners in the mesh')
  })

  it('a model its host does not list: 0 in use when the host is idle, the host\'s figures for its only runner, else unknown', () => {
    const runner = (model: string) => ({ id: model, kind: 'llama-server' as const, model, state: 'ready' as const, slots: 2 })
    const idle = node('idle', { runners: [runner('m')], metrics: metrics({ slotsTotal: 2 }) })
    const one = node('one', { runners: [runner('m')], metrics: metrics({ slotsBusy: 1, slotsTotal: 2, queueDepth: 4 }) })
    const two = node('two', { runners: [runner('m'), runner('n')], metrics: metrics({ slotsBusy: 1, slotsTotal: 4 }) })
    const rows = psOf({ ...view, nodes: [idle, one, two], placements: [], pins: [] })
    expect(rows.map((r) => [r.host, r.model, r.slotsBusy, r.queue])).toEqual([['idle', 'm', 0, 0], ['one', 'm', 1, 4], ['two', 'm', null, null], ['two', 'n', null, null]])
  })
})

describe('llmesh placements and pins', () => {
  it('by model and host, with memory, since (ISO off a terminal, an age on one) and detail', () => {
    const rows = placementsOf(view)
    expect(rows.map((p) => `${p.model}@${p.host}`)).toEqual(['broken@gpu-c', 'huge@gpu-a', 'huge@gpu-b', 'tiny@gpu-a'])
    const t = cells(formatPlacements(rows))
    expect(t[0]).toEqual(['MODEL', 'HOST', 'STATE', 'WHY', 'MEMORY', 'SINCE', 'DETAIL'])
    expect(t[1]).toEqual(['broken', 'gpu-c', 'failed', 'pin', '-', '2023-11-14T22:13:20.000Z', 'exited with code 1'])
    expect(t[2]).toEqual(['huge', 'gpu-a', 'loading', 'request', '-', '2023-11-14T22:15:00.000Z', '25%'])
    expect(t[3]!.at(-1)).toBe('blocks for gpu-a: 12')
    expect(cells(formatPlacements(rows, NO_COLOR, 1_700_000_160_000))[2]![5]).toBe('1m ago')
    expect(formatPlacements([])).toBe('no placements')
  })

  it('pins as a table of model and host', () => {
    expect(cells(formatPins({ pins: [{ model: 'tiny', host: '*' }, { model: 'big', host: 'gpu-a' }] }))).toEqual([['MODEL', 'HOST'], ['tiny', '*'], ['big', 'gpu-a']])
    expect(formatPins({ pins: [] })).toBe('no pins')
  })
})

describe('table cells', () => {
  it('sizes, counts and ages', () => {
    expect([bytes(512), bytes(1536), bytes(5 * 2 ** 30)]).toEqual(['512B', '1.5KiB', '5.0GiB'])
    expect([count(4096), count(131072), count(2500), count(7.6e9), count(12)]).toEqual(['4K', '128K', '3K', '7.6B', '12'])
    expect([age(2100, { tty: false, color: false }), age(59_999, TTY), age(3_600_000, TTY), age(3 * 86_400_000, TTY)]).toEqual(['2.1s ago', '59s ago', '1h ago', '3d ago'])
  })

  it('colour goes around the text, not the padding: columns stay aligned', () => {
    const coloured = table([['A', 'B'], [{ text: 'x', tone: 'good' }, 'y'], ['long', 'z']], TTY)
    const visible = coloured.replace(/\u001b\[\d+m/g, '')
    expect(visible).toBe(table([['A', 'B'], ['x', 'y'], ['long', 'z']]))
    expect(coloured).toContain('\u001b[32mx\u001b[39m   ')
  })
})
