#!/usr/bin/env node
// The llmesh demo: two agents on this machine's loopback. Agent B serves a tiny model on a real
// llama-server; agent A has no model. A chat completion sent to A is routed through the mesh to
// B and streamed back. Every long step prints progress; after the first run everything is cached.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request } from 'undici'
import { ensureLlamaCpp, ensureTinyModel, startAgentProcess, waitForReadyRunner, LOOPBACK_AGENT_ARGS } from '@llmesh/fixtures'
import { formatStatus, status } from 'llmesh'

const say = (line) => { process.stdout.write(`${line}\n`) }
const step = (line) => { say(`\n== ${line}`) }
const t0 = Date.now()
const since = () => `${((Date.now() - t0) / 1000).toFixed(1)} s`

step('fixtures (built once, then cached)')
const build = await ensureLlamaCpp((l) => say(`   ${l}`))
const model = await ensureTinyModel((l) => say(`   ${l}`))
say(`   model: ${model}`)

const dir = await mkdtemp(join(tmpdir(), 'llmesh-demo-'))
const loopback = LOOPBACK_AGENT_ARGS
const agents = []
const cleanup = async () => {
  await Promise.all(agents.map((a) => a.stop()))
  await rm(dir, { recursive: true, force: true })
}
process.on('SIGINT', () => { cleanup().finally(() => process.exit(130)) })

try {
  step('starting agent B (serves model "tiny" with llama-server)')
  const b = await startAgentProcess({
    name: 'host-b',
    dataDir: join(dir, 'b'),
    args: [...loopback, '--model', `tiny=${model}`, '--llama-server', build.llamaServer]
  })
  agents.push(b)
  say(`   B: peer ${b.info.peerId}, API ${b.info.api}`)

  step('starting agent A (no model), joining B by its address')
  const a = await startAgentProcess({ name: 'host-a', dataDir: join(dir, 'a'), args: [...loopback, '--bootstrap', b.info.addrs[0]] })
  agents.push(a)
  say(`   A: peer ${a.info.peerId}, API ${a.info.api}`)

  step('waiting for A to see B\'s runner ready')
  await waitForReadyRunner(a, b, { timeoutMs: 120_000 })
  say(`   ready after ${since()}`)

  step(`POST ${a.info.api}/v1/chat/completions (stream) to agent A`)
  const res = await request(`${a.info.api}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'tiny', stream: true, max_tokens: 32, messages: [{ role: 'user', content: 'Say hello to the mesh.' }] })
  })
  const servedBy = res.headers['x-llmesh-node'] === b.info.peerId ? 'agent B' : res.headers['x-llmesh-node']
  say(`   HTTP ${res.statusCode}, served by ${servedBy}, runner ${res.headers['x-llmesh-runner']}`)
  say(`   route: ${res.headers['x-llmesh-route']}`)
  say('   (random weights: the words are noise, the path they took is real)')
  process.stdout.write('   > ')
  let tokens = 0
  let buffer = ''
  for await (const chunk of res.body) {
    buffer += chunk.toString('utf8')
    let end
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const event = buffer.slice(0, end)
      buffer = buffer.slice(end + 2)
      if (!event.startsWith('data: ') || event === 'data: [DONE]') continue
      const data = JSON.parse(event.slice(6))
      if (data.error != null) throw new Error(`stream error: ${data.error.message}`)
      const text = data.choices?.[0]?.delta?.content
      if (typeof text === 'string' && text !== '') {
        tokens++
        // keep the terminal tidy: control bytes of the random model become dots
        process.stdout.write(text.replace(/[\u0000-\u001f\u007f-\u009f\ufffd]/g, '.'))
      }
    }
  }
  say(`\n   ${tokens} tokens streamed back through A`)
  if (res.statusCode !== 200 || tokens === 0) throw new Error('the completion did not come through')

  step('llmesh status (asked of agent A)')
  say(formatStatus(await status(a.info.api)))

  step(`done in ${since()}; stopping both agents`)
} catch (err) {
  say(`\ndemo failed: ${err instanceof Error ? err.message : String(err)}`)
  for (const a of agents) say(`--- last log lines of ${a.name}:\n${a.output().split('\n').slice(-15).join('\n')}`)
  process.exitCode = 1
} finally {
  await cleanup()
}
