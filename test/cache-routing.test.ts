/**
 * Three real agents on loopback, each with a real llama-server on the tiny model (2 slots each,
 * 6 in all). Six conversations run at once, each turn carrying the whole history and entering
 * at one of the three agents chosen at random (seeded), with the default strategy. Every turn
 * after a conversation's first must be served where its previous turn's prompt is cached: the
 * llama-server's answer (forwarded as is) says how many prompt tokens it took from cache
 * (`timings.cache_n`), and the route header says `cache=hit` (or, before any heartbeat told
 * this entry where the conversation is, that it went to its rendezvous home).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request } from 'undici'
import { mulberry32, startAgentProcess, waitForReadyRunner, type AgentProcess, LOOPBACK_AGENT_ARGS } from '@llmesh/fixtures'

const llamaServer = process.env['LLMESH_TEST_LLAMA_SERVER']!
const model = process.env['LLMESH_TEST_MODEL']!

/** conversations at once: the mesh's 6 slots, so each can keep a slot of its own */
const CONVERSATIONS = 6
const TURNS = 4
const SEED = 19
/**
 * A later turn is a hit when llama-server reused at least this share of the previous turn's
 * prompt. `cache_n > 0` alone proves nothing: any slot that served a request holds the chat
 * template's first tokens, so a turn on a cold host still shows a cache_n of about 20.
 */
const HIT_SHARE = 0.9
const WORDS = 'mesh slot cache prefix host turn token route queue model answer entry peer claim load runner'.split(' ')

let dir: string
const agents: AgentProcess[] = []

interface Answer { choices: Array<{ message: { content: string } }>, timings?: { cache_n?: number, prompt_n?: number } }

function words (rand: () => number, n: number): string {
  return Array.from({ length: n }, () => WORDS[Math.floor(rand() * WORDS.length)]).join(' ')
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'llmesh-cache-routing-'))
  const cfg = join(dir, 'agent.json')
  // 2 slots of 2048 tokens (the tiny model's trained context); one CPU thread per runner on 2 cores
  await writeFile(cfg, JSON.stringify({ llamaServer: { ctxSize: 4096, threads: 1 } }))
  const serve = [...LOOPBACK_AGENT_ARGS, '--model', `tiny=${model}`, '--llama-server', llamaServer, '--slots', '2', '--config', cfg]
  agents.push(await startAgentProcess({ name: 'h0', dataDir: join(dir, 'h0'), args: serve }))
  agents.push(...await Promise.all(['h1', 'h2'].map(async (name) => await startAgentProcess({ name, dataDir: join(dir, name), args: [...serve, '--bootstrap', agents[0]!.info.addrs[0]!] }))))
  for (const a of agents) for (const b of agents) await waitForReadyRunner(a, b, { model: 'tiny' })
}, 120_000)

afterAll(async () => {
  await Promise.all(agents.map(async (a) => { await a.stop() }))
  await rm(dir, { recursive: true, force: true })
})

describe('cache-aware routing by default', () => {
  it('serves every later turn of concurrent conversations from its cache, whatever the entry', async () => {
    const rand = mulberry32(SEED)
    const convs = Array.from({ length: CONVERSATIONS }, (_, i) => ({
      messages: [{ role: 'system', content: `conversation ${i}: ${words(rand, 8)}` }] as Array<{ role: string, content: string }>,
      promptTokens: 0
    }))
    const misses: string[] = []
    const notHits: string[] = []
    for (let turn = 0; turn < TURNS; turn++) {
      const plan = convs.map((c) => ({ c, user: words(rand, 30 + Math.floor(rand() * 20)), entry: agents[Math.floor(rand() * agents.length)]! }))
      await Promise.all(plan.map(async ({ c, user, entry }, i) => {
        c.messages.push({ role: 'user', content: user })
        const res = await request(`${entry.info.api}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'tiny', messages: c.messages, max_tokens: 16, ignore_eos: true, temperature: 0 })
        })
        const text = await res.body.text()
        expect(res.statusCode, text).toBe(200)
        const answer = JSON.parse(text) as Answer
        const cacheN = answer.timings?.cache_n ?? 0
        const route = String(res.headers['x-llmesh-route'])
        if (turn > 0) {
          if (cacheN < HIT_SHARE * c.promptTokens) misses.push(`conversation ${i} turn ${turn}: cache_n ${cacheN} of a previous prompt of ${c.promptTokens} tokens (via ${entry.name}, served by ${String(res.headers['x-llmesh-node']).slice(-6)}; ${route})`)
          // cache=hit: the entry knew where the conversation is; cache-home=rendezvous: no word of
          // it had reached this entry yet (turns here follow each other within a heartbeat), and
          // it went to the host every entry picks for it, where it started
          if (!route.includes('cache=hit') && !route.includes('cache-home=rendezvous')) notHits.push(`conversation ${i} turn ${turn}: ${route}`)
        }
        c.promptTokens = cacheN + (answer.timings?.prompt_n ?? 0)
        c.messages.push({ role: 'assistant', content: answer.choices[0]!.message.content })
      }))
    }
    expect.soft(misses, 'later turns that re-evaluated their history').toEqual([])
    expect.soft(notHits, 'later turns whose route says neither cache=hit nor the rendezvous home').toEqual([])
  }, 30_000)
})
