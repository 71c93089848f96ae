/**
 * The HTTP API against clients that are careless or hostile, on real agent processes:
 * B serves model `m` through a local OpenAI-compatible server (its `mlx` option), A routes to
 * B, D stands alone for API keys and the connection cap. A client's bad input (nested 5,000
 * deep, 50 MB) is its own 400 / 413 and never closes the serving host's circuit; slow clients
 * are cut by the head and request timeouts while long answers stream on; a loopback API
 * refuses DNS-rebinding Hosts and foreign Origins; keys open it; peer strings reach neither
 * headers nor the terminal raw.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { execFile } from 'node:child_process'
import { createServer, request as httpRequest, type Server } from 'node:http'
import { connect, type Socket } from 'node:net'
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { Client, request } from 'undici'
import OpenAI from 'openai'
import { Ollama } from 'ollama'
import { createHostilePeer, llmeshBin, startAgentProcess, waitFor, type AgentProcess, type HostilePeer, LOOPBACK_AGENT_ARGS, waitForReadyRunner } from '@llmesh/fixtures'
import { FrameKind, INFER_PROTOCOL, decodeFrame } from '@llmesh/protocol'

const run = promisify(execFile)

/** a peer name that would clear the screen and retitle the terminal if printed raw */
const EVIL_NAME = 'host-b\u001b[2J\u001b]0;pwned\u0007'
/** SSE events of a slow answer, one every SLOW_GAP_MS: it lasts longer than B's requestTimeoutMs */
const SLOW_EVENTS = 8
const SLOW_GAP_MS = 250

let dir: string
let runner: Server
let served = 0
let a: AgentProcess
let b: AgentProcess
let d: AgentProcess
let peer: HostilePeer | undefined
const sockets: Socket[] = []

/** `[[[..."x"...]]]`, `n` levels, as JSON text (JSON.stringify of such a value overflows the stack) */
const deepJson = (n: number): string => '['.repeat(n) + '"x"' + ']'.repeat(n)
const port = (agent: AgentProcess): number => Number(new URL(agent.info.api).port)

async function post (url: string, body: string, headers: Record<string, string> = {}): Promise<{ status: number, headers: Record<string, string | string[] | undefined>, json: any }> {
  const res = await request(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body })
  const text = await res.body.text()
  return { status: res.statusCode, headers: res.headers, json: text !== '' ? JSON.parse(text) : undefined }
}

const chatBody = (content: string, extra = ''): string => `{"model":"m",${extra}"messages":[{"role":"user","content":${content}}]}`

/** a raw TCP connection to an agent's API, closed in afterAll if the test does not */
async function rawSocket (agent: AgentProcess): Promise<Socket> {
  const s = connect(port(agent), '127.0.0.1')
  sockets.push(s)
  s.on('error', () => {})
  await new Promise<void>((resolve, reject) => { s.once('connect', resolve); s.once('error', reject) })
  return s
}

/** resolves with everything the server sent once it closed the connection */
async function closedWith (s: Socket): Promise<string> {
  let got = ''
  s.on('data', (c: Buffer) => { got += c.toString('latin1') })
  if (s.destroyed) return got
  await new Promise<void>((resolve) => s.once('close', () => { resolve() }))
  return got
}

async function cli (args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number, stdout: string, stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [llmeshBin(), ...args], { env: { ...process.env, ...env }, timeout: 30_000 })
    return { code: 0, stdout, stderr }
  } catch (err) {
    const e = err as { code?: number, stdout?: string, stderr?: string }
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' }
  }
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'llmesh-trust-http-'))
  runner = createServer((req, res) => {
    if (req.url === '/health') return void res.end('{"status":"ok"}')
    if (req.url === '/v1/models') return void res.writeHead(200, { 'content-type': 'application/json' }).end('{"object":"list","data":[{"id":"m","object":"model"}]}')
    let body = ''
    req.on('data', (c: Buffer) => { body += c.toString() })
    req.on('end', () => {
      served++
      if (!body.includes('"stream":true')) {
        return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }] }))
      }
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      let i = 0
      const timer = setInterval(() => {
        if (i === SLOW_EVENTS) {
          clearInterval(timer)
          return void res.end('data: [DONE]\n\n')
        }
        res.write(`data: {"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"t${i++} "},"finish_reason":null}]}\n\n`)
      }, SLOW_GAP_MS)
      res.on('close', () => { clearInterval(timer) })
    })
  })
  await new Promise<void>((resolve) => runner.listen(0, '127.0.0.1', resolve))
  const cfgB = join(dir, 'b.json')
  await writeFile(cfgB, JSON.stringify({
    mlx: { url: `http://127.0.0.1:${(runner.address() as { port: number }).port}`, model: 'm', slots: 4 },
    api: { headersTimeoutMs: 1000, requestTimeoutMs: 1000 }
  }))
  const cfgD = join(dir, 'd.json')
  await writeFile(cfgD, JSON.stringify({ api: { maxConnections: 6 } }))
  b = await startAgentProcess({ name: EVIL_NAME, dataDir: join(dir, 'b'), args: [...LOOPBACK_AGENT_ARGS, '--config', cfgB] })
  a = await startAgentProcess({ name: 'host-a', dataDir: join(dir, 'a'), args: [...LOOPBACK_AGENT_ARGS, '--bootstrap', b.info.addrs[0]!] })
  d = await startAgentProcess({ name: 'host-d', dataDir: join(dir, 'd'), args: [...LOOPBACK_AGENT_ARGS, '--config', cfgD] })
  await waitForReadyRunner(a, b)
}, 120_000)

afterAll(async () => {
  for (const s of sockets) s.destroy()
  await peer?.stop()
  await Promise.all([a?.stop(), b?.stop(), d?.stop()])
  runner?.closeAllConnections()
  await new Promise((resolve) => runner?.close(resolve))
  await rm(dir, { recursive: true, force: true })
})

describe('a client\'s bad input is the client\'s error', () => {
  it('bodies nested 5,000 deep are 400 each, and the host serves the next request (circuit closed)', async () => {
    const servedBefore = served
    for (const agent of [b, a]) {
      for (let i = 0; i < 7; i++) {
        const res = await post(`${agent.info.api}/v1/chat/completions`, chatBody(deepJson(5000)))
        expect(res.status).toBe(400)
        expect(res.json.error).toMatchObject({ code: 'invalid_request', type: 'invalid_request_error' })
        expect(res.json.error.message).toMatch(/nested deeper than 64 levels/)
      }
      const ollama = await post(`${agent.info.api}/api/chat`, `{"model":"m","stream":false,"messages":[{"role":"user","content":"hi","images":${deepJson(5000)}}]}`)
      expect(ollama.status).toBe(400)
      expect(ollama.json.error).toMatch(/nested deeper than 64 levels/)
      const ok = await post(`${agent.info.api}/v1/chat/completions`, chatBody('"hi"'))
      expect(ok.status).toBe(200)
      expect(ok.headers['x-llmesh-node']).toBe(b.info.peerId)
    }
    // none of the deep requests reached the runner
    expect(served - servedBefore).toBe(2)
  })

  it('a peer forwarding a body nested 5,000 deep gets INVALID_REQUEST, and the serving agent serves on', async () => {
    peer = await createHostilePeer({ cluster: { id: 'default' } })
    const { lp } = await peer.open(b.info.addrs[0]!, INFER_PROTOCOL)
    const payload = new TextEncoder().encode(`{"id":"deep","path":"/v1/chat/completions","model":"m","body":${chatBody(deepJson(5000))}}`)
    const frame = new Uint8Array(1 + payload.length)
    frame[0] = FrameKind.REQUEST
    frame.set(payload, 1)
    await lp.write(frame)
    const answer = decodeFrame((await lp.read()).subarray())
    expect(answer.kind).toBe(FrameKind.ERROR)
    expect(JSON.parse(new TextDecoder().decode(answer.payload))).toMatchObject({ code: 'INVALID_REQUEST' })
    const ok = await post(`${a.info.api}/v1/chat/completions`, chatBody('"after the peer"'))
    expect(ok.status).toBe(200)
    expect(ok.headers['x-llmesh-node']).toBe(b.info.peerId)
  })

  it('a 50 MB body gets the 413 in the API\'s shape: fetch (sized and chunked), the openai client, the Ollama route', async () => {
    const big = 'x'.repeat(50 * 1024 * 1024)
    const body = chatBody(JSON.stringify(big))
    const sized = await fetch(`${a.info.api}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body })
    expect(sized.status).toBe(413)
    expect((await sized.json() as any).error).toMatchObject({ code: 'invalid_request', type: 'invalid_request_error' })

    const bytes = new TextEncoder().encode(body)
    const chunked = await fetch(`${a.info.api}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      duplex: 'half',
      body: new ReadableStream({
        start (c) {
          for (let i = 0; i < bytes.length; i += 1 << 20) c.enqueue(bytes.subarray(i, i + (1 << 20)))
          c.close()
        }
      })
    } as RequestInit)
    expect(chunked.status).toBe(413)
    expect((await chunked.json() as any).error.code).toBe('invalid_request')

    const client = new OpenAI({ baseURL: `${a.info.api}/v1`, apiKey: 'unused', maxRetries: 0 })
    const err = await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: big }] }).then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(OpenAI.APIError)
    expect((err as InstanceType<typeof OpenAI.APIError>).status).toBe(413)

    const ollama = await fetch(`${a.info.api}/api/chat`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: `{"model":"m","stream":false,"messages":[{"role":"user","content":${JSON.stringify(big)}}]}` })
    expect(ollama.status).toBe(413)
    expect(typeof (await ollama.json() as any).error).toBe('string')

    const ok = await post(`${a.info.api}/v1/chat/completions`, chatBody('"after 50 MB"'))
    expect(ok.status).toBe(200)
  })
})

describe('slow clients', () => {
  it('a head that trickles in and a connection that sends nothing are closed with 408 (B: headersTimeoutMs 1000)', async () => {
    const idle = await rawSocket(b)
    const slow = await rawSocket(b)
    slow.write('POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n')
    const drip = setInterval(() => { if (!slow.destroyed) slow.write('x-drip: 1\r\n') }, 200)
    try {
      const [idleGot, slowGot] = await Promise.all([closedWith(idle), closedWith(slow)])
      expect(idleGot).toMatch(/^HTTP\/1\.1 408/)
      expect(slowGot).toMatch(/^HTTP\/1\.1 408/)
    } finally {
      clearInterval(drip)
    }
  })

  it('a body that trickles in is cut by requestTimeoutMs; an answer streaming for longer than it is not', async () => {
    const slow = await rawSocket(b)
    slow.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:${port(b)}\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{"model":"m",`)
    const drip = setInterval(() => { if (!slow.destroyed) slow.write(' ') }, 100)
    try {
      expect(await closedWith(slow)).toMatch(/^HTTP\/1\.1 408/)
    } finally {
      clearInterval(drip)
    }
    // the runner takes SLOW_EVENTS x SLOW_GAP_MS, longer than B's requestTimeoutMs
    const res = await request(`${b.info.api}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: chatBody('"slow"', '"stream":true,') })
    expect(res.statusCode).toBe(200)
    const text = await res.body.text()
    for (let i = 0; i < SLOW_EVENTS; i++) expect(text).toContain(`"t${i} "`)
    expect(text).toContain('data: [DONE]')
  })

  it('connections beyond api.maxConnections are closed as they come; freed, the API serves again', async () => {
    const held = await Promise.all([1, 2, 3, 4, 5, 6].map(async () => await rawSocket(d)))
    // a fresh connection (own client, no pooled socket) is refused once the six are accepted
    await waitFor('a seventh connection to be refused', async () => {
      const c = new Client(d.info.api, { pipelining: 0 })
      try {
        await (await c.request({ method: 'GET', path: '/health' })).body.dump()
        return false
      } catch {
        return true
      } finally {
        await c.destroy()
      }
    })
    await waitFor('the cap to be logged', () => d.output().includes('connection cap reached'))
    for (const s of held) s.destroy()
    await waitFor('the API to serve again', async () => {
      const c = new Client(d.info.api)
      try {
        const res = await c.request({ method: 'GET', path: '/health' })
        await res.body.dump()
        return res.statusCode === 200
      } finally {
        await c.close()
      }
    })
  })
})

describe('DNS rebinding (loopback API)', () => {
  async function get (agent: AgentProcess, path: string, headers: Record<string, string>): Promise<{ status: number, body: any }> {
    return await new Promise((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port: port(agent), path, headers, setHost: headers['host'] == null }, (res) => {
        let text = ''
        res.on('data', (c: Buffer) => { text += c.toString() })
        res.on('end', () => { resolve({ status: res.statusCode ?? 0, body: text !== '' ? JSON.parse(text) : undefined }) })
      })
      req.on('error', reject)
      req.end()
    })
  }

  it('refuses a rebound Host and a foreign Origin with 403 in each API\'s shape; takes loopback ones', async () => {
    const p = port(a)
    const rebound = await get(a, '/v1/models', { host: `evil.example:${p}` })
    expect(rebound.status).toBe(403)
    expect(rebound.body.error).toMatchObject({ code: 'forbidden' })
    const ollama = await get(a, '/api/tags', { host: `evil.example:${p}` })
    expect(ollama.status).toBe(403)
    expect(typeof ollama.body.error).toBe('string')
    expect((await get(a, '/mesh/view', { host: `127.0.0.1:${p + 1}` })).status).toBe(403)
    for (const origin of ['http://evil.example', 'null']) expect((await get(a, '/v1/models', { origin })).status).toBe(403)
    expect((await get(a, '/v1/models', { host: `localhost:${p}`, origin: 'http://localhost:3000' })).status).toBe(200)
    expect((await get(a, '/v1/models', {})).status).toBe(200)
  })
})

describe('API keys', () => {
  it('an API off loopback does not start without a key, and says how to make one', async () => {
    const res = await cli(['up', '--data-dir', join(dir, 'open'), ...LOOPBACK_AGENT_ARGS, '--api-host', '0.0.0.0'])
    expect(res.code).toBe(1)
    expect(res.stderr.trim().split('\n')).toHaveLength(1)
    expect(res.stderr).toContain(`no API key exists: create one with 'llmesh apikey add --data-dir ${join(dir, 'open')}'`)
  }, 60_000)

  it('once a key exists a loopback API needs it: 401 in each API\'s shape; openai and ollama clients with it; revoke closes it again', async () => {
    const dataDir = join(dir, 'd')
    const added = await cli(['apikey', 'add', '--name', 'tests', '--data-dir', dataDir, '--json'])
    expect(added.code).toBe(0)
    const { key, id } = JSON.parse(added.stdout) as { key: string, id: string }
    const file = await readFile(join(dataDir, 'apikeys.json'), 'utf8')
    expect(file).not.toContain(key)
    expect((await stat(join(dataDir, 'apikeys.json'))).mode & 0o777).toBe(0o600)
    const listed = await cli(['apikey', 'list', '--data-dir', dataDir])
    expect(listed.stdout).toMatch(new RegExp(`${id}\\s+tests\\s+\\d{4}-`))
    expect(listed.stdout).not.toContain(key)

    const noKey = await request(`${d.info.api}/v1/models`)
    expect(noKey.statusCode).toBe(401)
    expect(noKey.headers['www-authenticate']).toBe('Bearer realm="llmesh"')
    expect((await noKey.body.json() as any).error).toMatchObject({ code: 'unauthorized', type: 'invalid_request_error' })
    const ollamaNoKey = await request(`${d.info.api}/api/tags`, { headers: { authorization: 'Bearer llmesh_wrong' } })
    expect(ollamaNoKey.statusCode).toBe(401)
    expect(await ollamaNoKey.body.json()).toEqual({ error: 'unknown or revoked API key' })
    const health = await request(`${d.info.api}/health`)
    expect(health.statusCode).toBe(200)
    await health.body.dump()

    const openai = new OpenAI({ baseURL: `${d.info.api}/v1`, apiKey: key, maxRetries: 0 })
    expect((await openai.models.list()).data).toEqual([])
    const wrong = await new OpenAI({ baseURL: `${d.info.api}/v1`, apiKey: 'llmesh_wrong', maxRetries: 0 }).models.list().then(() => undefined, (e: unknown) => e)
    expect(wrong).toBeInstanceOf(OpenAI.AuthenticationError)
    const ollama = new Ollama({ host: d.info.api, headers: { Authorization: `Bearer ${key}` } })
    expect((await ollama.list()).models).toEqual([])

    expect((await cli(['status', '--data-dir', dataDir])).stderr).toContain('needs an API key: set LLMESH_API_KEY')
    const status = await cli(['status', '--data-dir', dataDir], { LLMESH_API_KEY: key })
    expect(status.code).toBe(0)
    expect(status.stdout).toContain('host-d (this)')

    // a second key keeps the API closed when the first is revoked
    const other = JSON.parse((await cli(['apikey', 'add', '--name', 'other', '--data-dir', dataDir, '--json'])).stdout) as { key: string }
    expect((await cli(['apikey', 'revoke', 'tests', '--data-dir', dataDir])).stdout).toContain(`revoked API key 'tests' (id ${id})`)
    await waitFor('the revoked key to be refused', async () => {
      const res = await request(`${d.info.api}/v1/models`, { headers: { authorization: `Bearer ${key}` } })
      await res.body.dump()
      return res.statusCode === 401
    })
    const withOther = await request(`${d.info.api}/v1/models`, { headers: { authorization: `Bearer ${other.key}` } })
    expect(withOther.statusCode).toBe(200)
    await withOther.body.dump()
    // no key left: the loopback API is open again
    await cli(['apikey', 'revoke', 'other', '--data-dir', dataDir])
    await waitFor('the API to be open again', async () => {
      const res = await request(`${d.info.api}/v1/models`)
      await res.body.dump()
      return res.statusCode === 200
    })
    const open = await request(`${d.info.api}/v1/models`)
    expect(open.statusCode).toBe(200)
    await open.body.dump()
  }, 120_000)
})

describe('peer strings', () => {
  it('llmesh status prints a peer\'s name with its terminal escapes escaped', async () => {
    const res = await cli(['status', '--data-dir', join(dir, 'a')])
    expect(res.code).toBe(0)
    expect(res.stdout).not.toContain('\u001b')
    expect(res.stdout).not.toContain('\u0007')
    expect(res.stdout).toContain('host-b\\x1b[2J\\x1b]0;pwned\\x07')
    const json = await cli(['status', '--data-dir', join(dir, 'a'), '--json'])
    expect(json.stdout).not.toContain('\u001b')
    expect((JSON.parse(json.stdout) as { nodes: Array<{ name: string }> }).nodes.map((n) => n.name)).toContain(EVIL_NAME)
  }, 60_000)
})
