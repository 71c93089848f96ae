import { describe, expect, it } from 'vitest'
import { formatStatus, resolveUpConfig, type StatusData } from './commands.js'

describe('llmesh up flags', () => {
  it('overlays flags on the defaults and validates once', async () => {
    const cfg = await resolveUpConfig({ name: 'gpu1', 'api-port': '0', model: ['tiny=/m/tiny.gguf', '/m/other.gguf'], 'no-mdns': true, bootstrap: ['/ip4/10.0.0.2/tcp/4778'] })
    expect(cfg.name).toBe('gpu1')
    expect(cfg.api.port).toBe(0)
    expect(cfg.models).toEqual([{ name: 'tiny', path: '/m/tiny.gguf' }, { path: '/m/other.gguf' }])
    expect(cfg.p2p.mdns).toBe(false)
    expect(cfg.p2p.bootstrap).toEqual(['/ip4/10.0.0.2/tcp/4778'])
    expect(Object.isFrozen(cfg)).toBe(true)
  })

  it('sets llama-server threads and the routing strategy, and refuses an unknown strategy', async () => {
    const cfg = await resolveUpConfig({ threads: '1', strategy: 'least-loaded', slots: '3' })
    expect(cfg.llamaServer.threads).toBe(1)
    expect(cfg.llamaServer.slots).toBe(3)
    expect(cfg.strategy).toBe('least-loaded')
    await expect(resolveUpConfig({ strategy: 'fastest-please' })).rejects.toThrow(/^--strategy 'fastest-please': .*"performance"/)
    await expect(resolveUpConfig({ threads: '0' })).rejects.toThrow(/^--threads '0': /)
  })

  it('refuses a bad value with one clear line per problem', async () => {
    await expect(resolveUpConfig({ 'api-port': 'eighty' })).rejects.toThrow("--api-port 'eighty': expected an integer")
    await expect(resolveUpConfig({ cluster: 'has spaces', 'log-level': 'loud' })).rejects.toThrow(/--cluster 'has spaces': .*\n.*--log-level 'loud': /)
    await expect(resolveUpConfig({ ollama: 'not a url' })).rejects.toThrow("--ollama 'not a url': Invalid URL")
  })
})

describe('llmesh status table', () => {
  it('shows state, link, heartbeat age and load per host in stable columns', () => {
    const data: StatusData = {
      via: 'http://127.0.0.1:11435',
      self: 'p-self',
      trust: { mode: 'lab', keyId: '0123456789ab' },
      nodes: [
        { name: 'a', peerId: '12D3KooWaaaaaaaaaaaa', self: true, connected: true, state: 'alive', heartbeatAgeMs: 0, load: { slotsBusy: 0, slotsTotal: 0, queueDepth: 0 }, api: '127.0.0.1:11435', models: [], runners: [] },
        { name: 'b', peerId: '12D3KooWbbbbbbbbbbbb', self: false, connected: false, state: 'suspect', heartbeatAgeMs: 2100, load: { slotsBusy: 2, slotsTotal: 4, queueDepth: 3 }, api: '127.0.0.1:11436', models: ['tiny'], runners: [{ id: 'r', model: 'tiny', state: 'ready', slots: 4 }] }
      ],
      placements: [],
      pins: []
    }
    const lines = formatStatus(data).split('\n')
    expect(lines).toHaveLength(4)
    expect(lines[0]).toBe('mesh seen from http://127.0.0.1:11435 (lab, key 0123456789ab): 2 node(s)')
    expect(lines[1]?.split(/\s{2,}/)).toEqual(['NAME', 'PEER', 'STATE', 'LINK', 'HEARD', 'SLOTS', 'QUEUE', 'API', 'MODELS', 'RUNNERS'])
    expect(lines[3]?.split(/\s{2,}/)).toEqual(['b', '…bbbbbbbbbb', 'suspect', 'unreachable', '2.1s ago', '2/4', '3', '127.0.0.1:11436', 'tiny', 'tiny:ready'])
  })

  it('lists placements with load progress or the first line of a failure, and the pins', () => {
    const data: StatusData = {
      via: 'http://127.0.0.1:11435',
      self: 'p-self',
      trust: { mode: 'home' },
      nodes: [],
      placements: [
        { model: 'big', host: 'a', state: 'loading', reason: 'request', progress: 0.4 },
        { model: 'broken', host: 'b', state: 'failed', reason: 'pin', error: 'exited with code 1\nerror: bad magic' }
      ],
      pins: [{ model: 'broken', host: 'b' }, { model: 'big', host: '*' }]
    }
    const text = formatStatus(data)
    const lines = text.split('\n')
    const at = lines.indexOf('placements:')
    expect(lines[at + 1]?.split(/\s{2,}/)).toEqual(['MODEL', 'HOST', 'STATE', 'WHY', 'DETAIL'])
    expect(lines[at + 2]?.split(/\s{2,}/)).toEqual(['big', 'a', 'loading', 'request', '40%'])
    expect(lines[at + 3]?.split(/\s{2,}/)).toEqual(['broken', 'b', 'failed', 'pin', 'exited with code 1'])
    expect(lines.at(-1)).toBe('pins: broken@b, big@*')
  })

  it('shows a split: the blocks of each host at the coordinator, and a member\'s share', () => {
    const split = { coordinator: 'a', hosts: [{ host: 'a', layers: 3 }, { host: 'b', layers: 5 }] }
    const data: StatusData = {
      via: 'http://127.0.0.1:11435',
      self: 'p-self',
      trust: { mode: 'home' },
      nodes: [],
      placements: [
        { model: 'huge', host: 'a', state: 'ready', reason: 'request', split },
        { model: 'huge', host: 'b', state: 'ready', reason: 'split', split }
      ],
      pins: []
    }
    const lines = formatStatus(data).split('\n')
    const at = lines.indexOf('placements:')
    expect(lines[at + 2]?.split(/\s{2,}/)).toEqual(['huge', 'a', 'ready', 'request', 'split a=3 b=5'])
    expect(lines[at + 3]?.split(/\s{2,}/)).toEqual(['huge', 'b', 'ready', 'split', 'blocks for a: 5'])
  })
})
