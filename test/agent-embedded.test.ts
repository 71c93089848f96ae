/**
 * Zero setup: an agent given a model but no llama-server binary serves it on the embedded
 * llama.cpp (node-llama-cpp's prebuilt binaries), through the same OpenAI API.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request } from 'undici'
import { startAgentProcess, waitFor, type AgentProcess } from '@llmesh/fixtures'

const model = process.env['LLMESH_TEST_MODEL']!
let dir: string
let agent: AgentProcess

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'llmesh-embedded-'))
  agent = await startAgentProcess({
    name: 'solo',
    dataDir: join(dir, 'solo'),
    // no llama-server anywhere: not configured, not in the environment, not on PATH
    env: { LLMESH_LLAMA_SERVER: '', PATH: '/usr/bin:/bin' },
    args: ['--api-port', '0', '--listen', '/ip4/127.0.0.1/tcp/0', '--no-mdns', '--log-level', 'warn', '--model', `tiny=${model}`]
  })
  await waitFor('the embedded runner', async () => {
    const res = await request(`${agent.info.api}/admin/runners`)
    const { runners } = await res.body.json() as { runners: Array<{ kind: string, state: string }> }
    return runners.some((r) => r.kind === 'embedded' && r.state === 'ready')
  }, 60_000)
}, 90_000)

afterAll(async () => {
  await agent?.stop()
  await rm(dir, { recursive: true, force: true })
})

describe('an agent without llama-server', () => {
  it('serves chat completions on the embedded llama.cpp, streaming and not', async () => {
    const body = { model: 'tiny', max_tokens: 6, messages: [{ role: 'user', content: 'hi' }] }
    const plain = await request(`${agent.info.api}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
    expect(plain.statusCode).toBe(200)
    expect(String(plain.headers['x-llmesh-runner'])).toContain('embedded')
    const json = await plain.body.json() as { choices: Array<{ message: { role: string } }>, usage: { completion_tokens: number } }
    expect(json.choices[0]?.message.role).toBe('assistant')
    expect(json.usage.completion_tokens).toBeGreaterThan(0)

    const streamed = await request(`${agent.info.api}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...body, stream: true }) })
    expect(streamed.statusCode).toBe(200)
    const text = await streamed.body.text()
    expect(text.trim().endsWith('data: [DONE]')).toBe(true)
  })
})
