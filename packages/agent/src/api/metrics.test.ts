import { describe, expect, it } from 'vitest'
import pino from 'pino'
import parsePrometheus from 'parse-prometheus-text-format'
import type { RunnerDescription } from '@llmesh/runners'
import type { AdmissionCounters } from '../serving.js'
import type { RequestEvent } from '../request-events.js'
import type { AgentPort, LocalPlacement, MeshView, ViewNode } from './port.js'
import type { Registry } from 'prom-client'
import { createAgentMetrics, reasonKind, type AgentMetrics } from './metrics.js'
import { buildHttpServer, type HttpApiInit } from './server.js'

interface Family { name: string, help: string, type: string, metrics: Array<{ labels?: Record<string, string>, value?: string }> }

/** The text format, parsed (checks its syntax; labelled histograms are read from the registry instead: this parser merges their series). */
function parse (text: string): Map<string, Family> {
  return new Map((parsePrometheus(text) as Family[]).map((f) => [f.name, f]))
}

type Values = Awaited<ReturnType<Registry['getMetricsAsJSON']>>

/** Scrapes `m`: its text parsed, and its values as the registry gives them. */
async function scrape (m: AgentMetrics): Promise<{ families: Map<string, Family>, values: Values }> {
  const families = parse(await m.registry.metrics())
  return { families, values: await m.registry.getMetricsAsJSON() }
}

/**
 * The value of the series `name` (a histogram's `_count`, `_sum` or `_bucket` included) whose
 * labels include `labels`; undefined when none.
 */
function value (s: { values: Values }, name: string, labels: Record<string, string | number> = {}): number | undefined {
  for (const f of s.values) {
    for (const v of f.values) {
      if ((v.metricName ?? f.name) !== name) continue
      if (Object.entries(labels).every(([k, want]) => v.labels[k] === want)) return v.value
    }
  }
  return undefined
}

/** The labels of every series of `name`. */
function series (s: { values: Values }, name: string): Array<Record<string, string | number>> {
  return s.values.find((f) => f.name === name)?.values.map((v) => v.labels as Record<string, string | number>) ?? []
}

function node (peerId: string, state: ViewNode['state'], extra: Partial<ViewNode> = {}): ViewNode {
  return {
    peerId, name: peerId, self: false, connected: true, state, heartbeatAgeMs: 0, metrics: null,
    models: [], runners: [], ...extra
  } as unknown as ViewNode
}

const runner = (id: string, model: string, extra: Partial<RunnerDescription> = {}): RunnerDescription =>
  ({ id, kind: 'llama-server', model, state: 'ready', slots: 2, restarts: 0, stalls: 0, ...extra })

const admission = (runnerId: string, model: string, extra: Partial<AdmissionCounters> = {}): AdmissionCounters =>
  ({ runnerId, model, slots: 2, busy: 0, queueDepth: 0, peakBusy: 0, peakQueue: 0, granted: 0, queued: 0, busyAnswers: 0, rejected: 0, expired: 0, lastUsedAt: 0, tokensOut: 0, promptTokens: 0, cachedTokens: 0, ...extra })

/** A port whose figures the test sets, and whose request events the test emits. */
function fakePort (): AgentPort & { state: { view: MeshView, runners: RunnerDescription[], admission: AdmissionCounters[], placements: LocalPlacement[], stats: Record<string, unknown> }, emit: (e: Partial<RequestEvent>) => void, listeners: number, reads: Record<string, number> } {
  const listeners = new Set<(e: RequestEvent) => void>()
  const reads: Record<string, number> = { view: 0, meshStats: 0 }
  const state = {
    view: { self: 'self', trust: { mode: 'home' }, nodes: [node('self', 'alive', { self: true })], placements: [], pins: [] } as MeshView,
    runners: [] as RunnerDescription[],
    admission: [] as AdmissionCounters[],
    placements: [] as LocalPlacement[],
    stats: {} as Record<string, unknown>
  }
  return {
    peerId: 'self',
    state,
    reads,
    get listeners () { return listeners.size },
    infer: async () => { throw new Error('not here') },
    trackRequest: () => () => {},
    view: () => { reads['view']!++; return state.view },
    meshStats: () => { reads['meshStats']!++; return state.stats },
    localRunners: () => state.runners,
    admission: () => state.admission,
    apiKeys: { hasKeys: async () => true, verify: async (k: string) => k === 'k' },
    localPlacements: () => state.placements,
    pins: () => [],
    setPin: () => [],
    requests: { on: (fn) => { listeners.add(fn); return () => { listeners.delete(fn) } } },
    emit: (e) => {
      const full: RequestEvent = { id: 'req-1', model: 'tiny', strategy: 'performance', entry: 'self', target: 'self', local: true, outcome: 'ok', durationMs: 100, attempts: 1, reasons: [], at: 0, ...e }
      for (const fn of listeners) fn(full)
    }
  }
}

describe('the agent\'s Prometheus metrics over a port', () => {
  it('counts requests by model, strategy, outcome and role, with latency and TTFT histograms, failovers and route reasons', async () => {
    const port = fakePort()
    port.state.view.nodes.push(node('peer-b', 'alive', { models: [{ name: 'tiny' }] as ViewNode['models'] }))
    const m = createAgentMetrics(port)
    port.emit({ ttftMs: 40, durationMs: 250, reasons: ['cache=hit', 'service=12ms', 'wait=30ms'] })
    port.emit({ local: false, ttftMs: 80, durationMs: 900, attempts: 3, reasons: ['cold-start', 'split', 'cache=moved(from=abc: busy)'] })
    port.emit({ outcome: 'error', code: 'QUEUE_FULL', durationMs: 5 })
    port.emit({ outcome: 'aborted', strategy: 'prefix-affinity', durationMs: 7 })
    port.emit({ outcome: 'error', code: 'MODEL_NOT_FOUND', local: false, target: undefined, durationMs: 1 })
    const f = await scrape(m)

    expect(value(f, 'llmesh_requests_total', { model: 'tiny', strategy: 'performance', outcome: 'ok', role: 'local' })).toBe(1)
    expect(value(f, 'llmesh_requests_total', { model: 'tiny', outcome: 'ok', role: 'forwarded' })).toBe(1)
    expect(value(f, 'llmesh_requests_total', { outcome: 'queue_full' })).toBe(1)
    expect(value(f, 'llmesh_requests_total', { outcome: 'aborted', strategy: 'prefix-affinity' })).toBe(1)
    expect(value(f, 'llmesh_requests_total', { outcome: 'model_not_found', role: 'none' })).toBe(1)
    expect(value(f, 'llmesh_request_duration_seconds_count', { model: 'tiny', role: 'local' })).toBe(3)
    expect(value(f, 'llmesh_request_duration_seconds_sum', { model: 'tiny', role: 'local' })).toBeCloseTo(0.262)
    expect(value(f, 'llmesh_request_ttft_seconds_count', { model: 'tiny', role: 'local' })).toBe(1)
    expect(value(f, 'llmesh_request_ttft_seconds_count', { model: 'tiny', role: 'forwarded' })).toBe(1)
    expect(value(f, 'llmesh_request_ttft_seconds_sum', { model: 'tiny', role: 'local' })).toBeCloseTo(0.04)
    expect(value(f, 'llmesh_request_ttft_seconds_bucket', { role: 'local', le: 0.05 })).toBe(1)
    expect(value(f, 'llmesh_request_ttft_seconds_bucket', { role: 'local', le: 0.025 })).toBe(0)
    expect(value(f, 'llmesh_request_failovers_total', { model: 'tiny' })).toBe(2)
    const reasons = Object.fromEntries(series(f, 'llmesh_route_reasons_total').map((l) => [l['reason'], value(f, 'llmesh_route_reasons_total', l)]))
    expect(reasons).toEqual({ 'cache=hit': 1, 'cold-start': 1, split: 1, 'cache=moved': 1 })
    for (const fam of f.families.values()) {
      expect(fam.name).toMatch(/^llmesh_/)
      expect(fam.help.length).toBeGreaterThan(0)
    }
    m.close()
    expect(port.listeners).toBe(0)
  })

  it('keeps model labels bounded: a model the view does not list is "other", and at most 64 model labels exist', async () => {
    const port = fakePort()
    const listed = Array.from({ length: 70 }, (_, i) => ({ name: `m${i}` }))
    port.state.view.nodes.push(node('peer-b', 'alive', { models: listed as ViewNode['models'] }))
    const m = createAgentMetrics(port)
    port.emit({ model: 'what is the meaning of life? a prompt-like name' })
    for (const { name } of listed) port.emit({ model: name })
    const f = await scrape(m)
    const models = new Set(series(f, 'llmesh_requests_total').map((l) => l['model']))
    expect(models.size).toBe(65)
    expect(models.has('other')).toBe(true)
    expect(models.has('what is the meaning of life? a prompt-like name')).toBe(false)
    expect(value(f, 'llmesh_requests_total', { model: 'other' })).toBe(1 + 70 - 64)
    // no request id anywhere
    for (const fam of f.families.values()) for (const s of fam.metrics) expect(Object.values(s.labels ?? {})).not.toContain('req-1')
    m.close()
  })

  it('counts a route reason that names a decision, never a figure or a sentence', () => {
    expect(reasonKind('cache=new')).toBe('cache=new')
    expect(reasonKind('cache=moved(from=12D3KooW: busy)')).toBe('cache=moved')
    expect(reasonKind('affinity=hit')).toBe('affinity=hit')
    expect(reasonKind('cold-start')).toBe('cold-start')
    expect(reasonKind('vram-low=120MiB')).toBeUndefined()
    expect(reasonKind('tie-band=5%')).toBeUndefined()
    expect(reasonKind('load=1/2')).toBeUndefined()
    expect(reasonKind('tried 12D3KooWabc: busy')).toBeUndefined()
    expect(reasonKind('Weird reason!')).toBeUndefined()
    expect(reasonKind('')).toBeUndefined()
  })

  it('reads runners, admission, membership, the mesh\'s counters and placements when scraped, each port figure once per scrape', async () => {
    const port = fakePort()
    const s = port.state
    s.view.nodes.push(node('peer-b', 'alive'), node('peer-c', 'alive'), node('peer-d', 'unknown'))
    s.view.nodes[0]!.metrics = { tokensPerSec: 42.5, prefillTokensPerSec: 900 } as ViewNode['metrics']
    s.view.nodes[0]!.models = [{ name: 'tiny' }] as ViewNode['models']
    s.runners = [runner('llama-tiny-1', 'tiny', { restarts: 2, stalls: 1 }), runner('rpc-big-1', 'big', { kind: 'rpc-server', state: 'failed', gaveUp: true })]
    s.admission = [admission('llama-tiny-1', 'tiny', { slots: 4, busy: 3, queueDepth: 5, granted: 9, rejected: 1, tokensOut: 120, cachedTokens: 64 })]
    s.placements = [
      { model: 'tiny', state: 'ready', reason: 'demand' } as unknown as LocalPlacement,
      { model: 'big', state: 'loading', reason: 'demand', tunnels: [{ peerId: 'peer-b', bytesSent: 1000, bytesReceived: 50 }, { peerId: 'peer-c', bytesSent: 24, bytesReceived: 50 }] } as unknown as LocalPlacement
    ]
    s.stats = {
      heartbeatsSent: 12, heartbeatsReceived: 30, bytesPublished: 4096, bytesReceived: 8192, deltasPublished: 3, docBytes: 5555,
      connections: 2, peers: 2, rpcRefused: { 'not-allowed': 2, 'malformed-header': 0 }, invalidRecords: { 'bad-sig': 1 },
      inferRefused: { 'Not a Reason!': 7 }
    }
    const m = createAgentMetrics(port)
    await m.registry.metrics()
    expect(port.reads).toEqual({ view: 1, meshStats: 1 })
    let f = await scrape(m)

    const tiny = { runner: 'llama-tiny-1', model: 'tiny', kind: 'llama-server' }
    expect(value(f, 'llmesh_runner_slots', tiny)).toBe(4)
    expect(value(f, 'llmesh_runner_slots_busy', tiny)).toBe(3)
    expect(value(f, 'llmesh_runner_queue_depth', tiny)).toBe(5)
    expect(value(f, 'llmesh_runner_restarts_total', tiny)).toBe(2)
    expect(value(f, 'llmesh_runner_stalls_total', tiny)).toBe(1)
    expect(value(f, 'llmesh_runner_state', { ...tiny, state: 'ready' })).toBe(1)
    expect(value(f, 'llmesh_runner_state', { ...tiny, state: 'failed' })).toBe(0)
    expect(value(f, 'llmesh_runner_admissions_total', { ...tiny, result: 'granted' })).toBe(9)
    expect(value(f, 'llmesh_runner_admissions_total', { ...tiny, result: 'rejected' })).toBe(1)
    expect(value(f, 'llmesh_runner_tokens_total', { ...tiny, type: 'generated' })).toBe(120)
    expect(value(f, 'llmesh_runner_tokens_total', { ...tiny, type: 'cached' })).toBe(64)
    // 'big' is no model the view lists: its runner is labelled 'other'
    const big = { runner: 'rpc-big-1', model: 'other', kind: 'rpc-server' }
    expect(value(f, 'llmesh_runner_slots', big)).toBe(2)
    expect(value(f, 'llmesh_runner_gave_up', big)).toBe(1)
    expect(value(f, 'llmesh_runner_state', { ...big, state: 'failed' })).toBe(1)
    expect(value(f, 'llmesh_host_tokens_per_second')).toBe(42.5)
    expect(value(f, 'llmesh_host_prefill_tokens_per_second')).toBe(900)

    expect(value(f, 'llmesh_peers', { state: 'alive' })).toBe(2)
    expect(value(f, 'llmesh_peers', { state: 'unknown' })).toBe(1)
    expect(value(f, 'llmesh_peers', { state: 'dead' })).toBe(0)

    expect(value(f, 'llmesh_heartbeats_sent_total')).toBe(12)
    expect(value(f, 'llmesh_heartbeats_received_total')).toBe(30)
    expect(value(f, 'llmesh_gossip_bytes_total', { direction: 'sent' })).toBe(4096)
    expect(value(f, 'llmesh_gossip_bytes_total', { direction: 'received' })).toBe(8192)
    expect(value(f, 'llmesh_gossip_deltas_total', { event: 'published' })).toBe(3)
    expect(value(f, 'llmesh_cluster_document_bytes')).toBe(5555)
    expect(value(f, 'llmesh_connected_peers')).toBe(2)
    expect(value(f, 'llmesh_rpc_tunnel_refused_total', { reason: 'not-allowed' })).toBe(2)
    expect(value(f, 'llmesh_doc_invalid_records_total', { reason: 'bad-sig' })).toBe(1)
    // a key that is not a plain reason name is not turned into a label
    expect(series(f, 'llmesh_infer_refused_total')).toEqual([])

    expect(value(f, 'llmesh_placements', { state: 'ready' })).toBe(1)
    expect(value(f, 'llmesh_placements', { state: 'loading' })).toBe(1)
    expect(value(f, 'llmesh_placements', { state: 'failed' })).toBe(0)
    expect(value(f, 'llmesh_split_tunnel_bytes_total', { direction: 'sent' })).toBe(1024)
    expect(value(f, 'llmesh_split_tunnel_bytes_total', { direction: 'received' })).toBe(100)

    // the next scrape: peer-b turned suspect, peer-c dead, peer-d alive; a runner went away
    s.view = { ...s.view, nodes: [s.view.nodes[0]!, node('peer-b', 'suspect'), node('peer-c', 'dead'), node('peer-d', 'alive')] }
    s.runners = [s.runners[0]!]
    s.stats = { ...s.stats, heartbeatsSent: 20 }
    f = await scrape(m)
    expect(value(f, 'llmesh_peer_transitions_total', { from: 'alive', to: 'suspect' })).toBe(1)
    expect(value(f, 'llmesh_peer_transitions_total', { from: 'alive', to: 'dead' })).toBe(1)
    expect(value(f, 'llmesh_peer_transitions_total', { from: 'unknown', to: 'alive' })).toBe(1)
    expect(value(f, 'llmesh_peers', { state: 'suspect' })).toBe(1)
    expect(value(f, 'llmesh_heartbeats_sent_total')).toBe(20)
    expect(value(f, 'llmesh_runner_slots', big)).toBeUndefined()
    m.close()
  })

  it('keeps two agents\' metrics apart: each has its own registry', async () => {
    const a = fakePort()
    const b = fakePort()
    a.state.view.nodes[0]!.models = [{ name: 'tiny' }] as ViewNode['models']
    const ma = createAgentMetrics(a)
    const mb = createAgentMetrics(b)
    a.emit({})
    expect(value(await scrape(ma), 'llmesh_requests_total', { model: 'tiny' })).toBe(1)
    expect(series(await scrape(mb), 'llmesh_requests_total')).toEqual([])
    ma.close()
    mb.close()
  })

  it('serves GET /metrics behind the API\'s key guard, in the Prometheus text format', async () => {
    const init: HttpApiInit = {
      host: '0.0.0.0', allowedHosts: [], bodyLimit: 1024 * 1024, requestTimeoutMs: 60_000, headersTimeoutMs: 10_000,
      keepAliveTimeoutMs: 72_000, maxConnections: 100, strategy: 'performance', deadlineMs: 120_000, writeStallMs: 30_000
    }
    const port = fakePort()
    const app = buildHttpServer(init, port, pino({ level: 'silent' }))
    const refused = await app.inject({ method: 'GET', url: '/metrics' })
    expect(refused.statusCode).toBe(401)
    const res = await app.inject({ method: 'GET', url: '/metrics', headers: { authorization: 'Bearer k' } })
    expect(res.statusCode).toBe(200)
    expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/)
    expect(parse(res.body).has('llmesh_requests_total')).toBe(true)
    expect(port.listeners).toBe(1)
    await app.close()
    expect(port.listeners).toBe(0)
  })
})
