/**
 * Prometheus metrics of real agents on loopback: B serves the tiny model on a real llama-server,
 * A has none and forwards to B. After a few chat requests, each agent's `GET /metrics` is parsed
 * with a Prometheus text parser: the request counters count them (local at B, forwarded at A),
 * the histograms hold them, B's runner gauges match its /admin/runners, membership and mesh
 * counters show the two agents, and no label value is a request id, a prompt or a model name no
 * host has.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request } from 'undici'
import parsePrometheus from 'parse-prometheus-text-format'
import { startAgentProcess, waitFor, waitForReadyRunner, type AgentProcess, LOOPBACK_AGENT_ARGS } from '@llmesh/fixtures'

const llamaServer = process.env['LLMESH_TEST_LLAMA_SERVER']!
const model = process.env['LLMESH_TEST_MODEL']!
const PROMPT = 'tell me about the metrics of the mesh'
const UNKNOWN_MODEL = 'please summarise my private notes'

interface Sample { labels?: Record<string, string>, value?: string, buckets?: Record<string, string> }
interface Family { name: string, help: string, type: string, metrics: Sample[] }
type Families = Map<string, Family>

let dir: string
let a: AgentProcess
let b: AgentProcess

async function scrape (agent: AgentProcess): Promise<{ status: number, contentType: string, text: string, families: Families }> {
  const res = await request(`${agent.info.api}/metrics`)
  const text = await res.body.text()
  const families: Families = res.statusCode === 200 ? new Map((parsePrometheus(text) as Family[]).map((f) => [f.name, f])) : new Map()
  return { status: res.statusCode, contentType: String(res.headers['content-type']), text, families }
}

/** Sum of the values of `family`'s series whose labels include `labels`. */
function sum (families: Families, family: string, labels: Record<string, string> = {}): number {
  return (families.get(family)?.metrics ?? [])
    .filter((s) => Object.entries(labels).every(([k, v]) => s.labels?.[k] === v))
    .reduce((acc, s) => acc + Number(s.value ?? 0), 0)
}

/**
 * Observations of a histogram family with a single series (its +Inf bucket). The parser merges
 * the series of a labelled histogram into one, so the test keeps each histogram to one series
 * (one model, one role per agent).
 */
function observations (families: Families, family: string): number {
  const f = families.get(family)
  expect(f?.type).toBe('HISTOGRAM')
  return Number(f?.metrics[0]?.buckets?.['+Inf'] ?? 0)
}

async function chat (entry: AgentProcess, body: object): Promise<{ status: number, text: string }> {
  const res = await request(`${entry.info.api}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ max_tokens: 4, messages: [{ role: 'user', content: PROMPT }], ...body })
  })
  return { status: res.statusCode, text: await res.body.text() }
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'llmesh-metrics-'))
  b = await startAgentProcess({
    name: 'host-b',
    dataDir: join(dir, 'b'),
    args: [...LOOPBACK_AGENT_ARGS, '--model', `tiny=${model}`, '--llama-server', llamaServer, '--slots', '2']
  })
  a = await startAgentProcess({ name: 'host-a', dataDir: join(dir, 'a'), args: [...LOOPBACK_AGENT_ARGS, '--bootstrap', b.info.addrs[0]!] })
  await waitForReadyRunner(a, b, { model: 'tiny' })
}, 120_000)

afterAll(async () => {
  await Promise.all([a?.stop(), b?.stop()])
  await rm(dir, { recursive: true, force: true })
})

describe('GET /metrics of running agents', () => {
  it('counts the requests, holds their latencies, and matches the runners of /admin/runners', async () => {
    // at B: two served by its own runner (one streamed); at A: one forwarded to B
    expect((await chat(b, { model: 'tiny' })).status).toBe(200)
    expect((await chat(b, { model: 'tiny', stream: true })).status).toBe(200)
    expect((await chat(a, { model: 'tiny' })).status).toBe(200)

    // a request is counted once its stream ended: a bounded wait for the last of them
    const atB = await waitFor('B to count its requests', async () => {
      const s = await scrape(b)
      return sum(s.families, 'llmesh_requests_total') >= 2 ? s : undefined
    })
    expect(atB.status).toBe(200)
    expect(atB.contentType).toMatch(/^text\/plain; version=0\.0\.4/)
    const fb = atB.families
    expect(sum(fb, 'llmesh_requests_total', { model: 'tiny', outcome: 'ok', role: 'local', strategy: 'performance' })).toBe(2)
    expect(observations(fb, 'llmesh_request_duration_seconds')).toBe(2)
    expect(observations(fb, 'llmesh_request_ttft_seconds')).toBe(2)
    expect(sum(fb, 'llmesh_route_reasons_total', { reason: 'local' })).toBe(2)
    expect(sum(fb, 'llmesh_route_reasons_total', { reason: 'strategy=performance' })).toBe(2)
    for (const f of fb.values()) {
      expect(f.name).toMatch(/^llmesh_/)
      expect(f.help).not.toBe('')
    }

    const atA = await waitFor('A to count its request', async () => {
      const s = await scrape(a)
      return sum(s.families, 'llmesh_requests_total') >= 1 ? s : undefined
    })
    const fa = atA.families
    expect(sum(fa, 'llmesh_requests_total', { model: 'tiny', outcome: 'ok', role: 'forwarded' })).toBe(1)
    expect(sum(fa, 'llmesh_requests_total')).toBe(1)
    expect(observations(fa, 'llmesh_request_ttft_seconds')).toBe(1)
    expect(sum(fa, 'llmesh_route_reasons_total', { reason: 'remote' })).toBe(1)
    // A sees B alive and has heard it
    expect(sum(fa, 'llmesh_peers', { state: 'alive' })).toBe(1)
    expect(sum(fa, 'llmesh_heartbeats_received_total')).toBeGreaterThan(0)
    expect(sum(fa, 'llmesh_gossip_bytes_total', { direction: 'received' })).toBeGreaterThan(0)
    expect(sum(fa, 'llmesh_cluster_document_bytes')).toBeGreaterThan(0)
    expect(sum(fa, 'llmesh_connected_peers')).toBe(1)

    // B's runner gauges are /admin/runners' figures (nothing in flight now)
    const s = await scrape(b)
    const { runners, admission } = await (await request(`${b.info.api}/admin/runners`)).body.json() as {
      runners: Array<{ id: string, kind: string, model: string, state: string, restarts?: number }>
      admission: Array<{ runnerId: string, slots: number, busy: number, queueDepth: number, granted: number, tokensOut: number }>
    }
    expect(runners.length).toBe(1)
    for (const r of runners) {
      const labels = { runner: r.id, model: r.model, kind: r.kind }
      const adm = admission.find((x) => x.runnerId === r.id)!
      expect(sum(s.families, 'llmesh_runner_slots', labels)).toBe(adm.slots)
      expect(sum(s.families, 'llmesh_runner_slots_busy', labels)).toBe(adm.busy)
      expect(sum(s.families, 'llmesh_runner_queue_depth', labels)).toBe(adm.queueDepth)
      expect(sum(s.families, 'llmesh_runner_restarts_total', labels)).toBe(r.restarts ?? 0)
      expect(sum(s.families, 'llmesh_runner_state', { ...labels, state: r.state })).toBe(1)
      expect(sum(s.families, 'llmesh_runner_admissions_total', { ...labels, result: 'granted' })).toBe(adm.granted)
      // B's runner served all three: two of its own, one forwarded by A
      expect(adm.granted).toBeGreaterThanOrEqual(3)
      expect(adm.tokensOut).toBeGreaterThan(0)
      expect(sum(s.families, 'llmesh_runner_tokens_total', { ...labels, type: 'generated' })).toBe(adm.tokensOut)
    }

    // a model no host has, whose name reads like a prompt: never a label value
    expect((await chat(b, { model: UNKNOWN_MODEL })).status).toBeGreaterThanOrEqual(400)
    expect((await chat(a, { model: UNKNOWN_MODEL })).status).toBeGreaterThanOrEqual(400)
    // no label value is a request id, the prompt, or the unknown model's name
    const after = [await scrape(b), await scrape(a)]
    // counted as a request no host answered, under the model 'other'
    expect(sum(after[0]!.families, 'llmesh_requests_total', { model: 'other', role: 'none' })).toBe(1)
    for (const scraped of after) {
      for (const f of scraped.families.values()) {
        for (const sample of f.metrics) {
          for (const v of Object.values(sample.labels ?? {})) {
            expect(v).not.toMatch(/^[0-9a-f]{8}(-[0-9a-f]{4})?/)
            expect(v).not.toContain(PROMPT)
            expect(v).not.toBe(UNKNOWN_MODEL)
          }
        }
      }
      expect(scraped.text).not.toContain(PROMPT)
      expect(scraped.text).not.toContain(UNKNOWN_MODEL)
    }
  })
})
