import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough, Readable } from 'node:stream'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { MeshView } from '@llmesh/agent'
import { main, type CliIo } from './main.js'

/**
 * The argument handling and printing of the mesh commands, in-process: main(argv, io) and its
 * exit code. The agent's side is a loopback HTTP server answering a fixed view (the commands
 * against real agents: test/cli-mesh.test.ts).
 */

interface Run { code: number | undefined, out: string, err: string }

async function cli (argv: string[], io: Partial<CliIo> = {}): Promise<Run> {
  const r = { out: '', err: '' }
  const code = await main(argv, { stdout: (t) => { r.out += t }, stderr: (t) => { r.err += t }, ...io })
  return { code, ...r }
}

const view = {
  self: 'p-a',
  trust: { mode: 'home' },
  nodes: [
    { peerId: 'p-a', name: 'gpu-a', version: '0.1.0', protocol: 1, addrs: ['/ip4/127.0.0.1/tcp/1'], api: '127.0.0.1:1', hardware: { cpus: 1, memBytes: 1, platform: 'linux', arch: 'x64' }, models: [], runners: [], startedAt: 0, updatedAt: 0, sig: '', self: true, connected: true, state: 'alive', heartbeatAgeMs: null, metrics: null },
    { peerId: 'p-b', name: 'gpu-b', version: '0.1.0', protocol: 1, addrs: ['/ip4/127.0.0.1/tcp/2'], api: '127.0.0.1:2', hardware: { cpus: 1, memBytes: 1, platform: 'linux', arch: 'x64' }, models: [], runners: [], startedAt: 0, updatedAt: 0, sig: '', self: false, connected: false, state: 'dead', heartbeatAgeMs: 90_000, metrics: null }
  ],
  placements: [],
  pins: []
} satisfies MeshView

let server: Server
let api: string
let dir: string
const seen: Array<{ method: string, url: string, auth: string | undefined, body: string }> = []

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'llmesh-cli-mesh-'))
  server = createServer((req, res) => {
    let body = ''
    req.on('data', (d: Buffer) => { body += d.toString() })
    req.on('end', () => {
      seen.push({ method: req.method!, url: req.url!, auth: req.headers.authorization, body })
      res.setHeader('content-type', 'application/json')
      if (req.url === '/mesh/view') return res.end(JSON.stringify(view))
      if (req.url === '/v1/models') return res.end(JSON.stringify({ object: 'list', data: [{ id: 'tiny' }, { id: 'other' }, { id: 'broken' }] }))
      if (req.url === '/v1/chat/completions') {
        const sent = JSON.parse(body) as { model: string, messages: unknown[] }
        if (sent.model === 'broken') {
          res.statusCode = 502
          return res.end(JSON.stringify({ error: { message: 'runner failed: boom\u001b[2J', type: 'server_error', code: 'runner_failed' } }))
        }
        const turn = sent.messages.length
        res.setHeader('content-type', 'text/event-stream')
        res.setHeader('x-llmesh-node', 'p-b')
        const chunk = (content: string): string => `data: ${JSON.stringify({ object: 'chat.completion.chunk', choices: [{ delta: { content } }] })}\n\n`
        return res.end(`${chunk('answer ')}${chunk(`${turn}\u001b[2J`)}data: [DONE]\n\n`)
      }
      if (req.url === '/admin/pins' && JSON.parse(body).host === 'nowhere') {
        res.statusCode = 400
        return res.end(JSON.stringify({ error: { message: "unknown host 'nowhere'\u001b[2J", type: 'invalid_request_error', code: 'invalid_request' } }))
      }
      if (req.url === '/admin/pins') return res.end(JSON.stringify({ pins: req.method === 'POST' ? [{ model: 'tiny', host: 'p-b' }] : [] }))
      res.statusCode = 404
      res.end('{}')
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  api = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve))
  await rm(dir, { recursive: true, force: true })
})

describe('mesh commands: usage errors are exit 2 and one line', () => {
  it.each([
    [['pin'], "llmesh pin: expected 'pin MODEL [--host H]'\n"],
    [['unpin', 'a', 'b'], "llmesh unpin: expected 'unpin MODEL [--host H]'\n"],
    [['status', '--count', '2'], 'llmesh status: --count goes with --watch\n'],
    [['status', '--watch', '--count', '0'], "llmesh status: --count '0': expected a positive integer\n"],
    [['chat', 'tiny', 'hello'], "llmesh chat: unexpected argument 'hello' (a prompt goes after -p)\n"],
    [['chat', '-p', 'x', '--max-tokens', 'many'], "llmesh chat: --max-tokens 'many': expected a positive integer\n"],
    [['ps', '--frob'], "llmesh ps: unknown option '--frob'\n'llmesh help' lists the commands and their options\n"],
    [['models', 'extra'], "llmesh models: unexpected argument 'extra'\n'llmesh help' lists the commands and their options\n"]
  ])('%j', async (argv, err) => {
    expect(await cli(argv)).toEqual({ code: 2, out: '', err })
  })

  it('with no agent to ask, every command fails with exit 1 and says so', async () => {
    for (const argv of [['peers'], ['models'], ['ps'], ['placements'], ['pin', 'tiny'], ['unpin', 'tiny'], ['chat', '-p', 'x']]) {
      const r = await cli([...argv, '--data-dir', join(dir, 'none')])
      expect(r.code).toBe(1)
      expect(r.err).toMatch(new RegExp(`^llmesh ${argv[0]!}: no running agent found in `))
    }
    const down = await cli(['peers', '--api', 'http://127.0.0.1:1'])
    expect(down.code).toBe(1)
    expect(down.err).toMatch(/^llmesh peers: cannot reach the agent at http:\/\/127\.0\.0\.1:1: /)
  })

  it('help lists every command', async () => {
    const { out } = await cli(['help'])
    for (const c of ['status', 'peers', 'models', 'ps', 'placements', 'pin MODEL', 'unpin MODEL', 'chat [MODEL]', '--watch', '--count N', '-p, --prompt']) expect(out).toContain(c)
  })
})

describe('mesh commands against an API', () => {
  it('--json prints the data; plain columns off a terminal; colour and ages on one', async () => {
    const json = await cli(['peers', '--api', api, '--json'])
    expect(json.code).toBe(0)
    expect((JSON.parse(json.out) as Array<{ name: string, link: string }>).map((p) => [p.name, p.link])).toEqual([['gpu-a', 'self'], ['gpu-b', 'unreachable']])
    const plain = await cli(['peers', '--api', api])
    expect(plain.out.split('\n')[2]!.split(/\s{2,}/).slice(0, 5)).toEqual(['gpu-b', 'p-b', 'dead', 'unreachable', '90.0s ago'])
    const tty = await cli(['peers', '--api', api], { isTTY: true })
    expect(tty.out).toContain('\u001b[31mdead\u001b[39m')
    expect(tty.out).toContain('1m ago')
    expect((await cli(['peers', '--api', api], { isTTY: true, color: false })).out).not.toContain('\u001b')
  })

  it('sends $LLMESH_API_KEY as a bearer token', async () => {
    process.env['LLMESH_API_KEY'] = 'sk-test'
    try {
      seen.length = 0
      await cli(['ps', '--api', api])
      expect(seen[0]).toMatchObject({ url: '/mesh/view', auth: 'Bearer sk-test' })
    } finally {
      delete process.env['LLMESH_API_KEY']
    }
  })

  it('pin and unpin post the model and host, and print the pins by host name; the agent\'s refusal is exit 1', async () => {
    seen.length = 0
    const pin = await cli(['pin', 'tiny', '--host', 'gpu-b', '--api', api, '--json'])
    expect(pin).toMatchObject({ code: 0, err: '' })
    expect(JSON.parse(pin.out)).toEqual({ pins: [{ model: 'tiny', host: 'gpu-b' }] })
    expect(seen[0]).toMatchObject({ method: 'POST', url: '/admin/pins', body: '{"model":"tiny","host":"gpu-b"}' })
    expect(await cli(['unpin', 'tiny', '--api', api])).toEqual({ code: 0, out: 'no pins\n', err: '' })
    expect(seen.find((s) => s.method === 'DELETE')?.body).toBe('{"model":"tiny"}')
    expect(await cli(['pin', 'tiny', '--host', 'nowhere', '--api', api])).toEqual({ code: 1, out: '', err: "llmesh pin: unknown host 'nowhere'\\x1b[2J\n" })
  })

  it('status --watch: a table per interval off a terminal, the screen redrawn on one, JSON one a line, Ctrl-C stops it', async () => {
    const plain = await cli(['status', '--watch', '--count', '2', '--api', api])
    expect(plain.code).toBe(0)
    expect(plain.out.match(/^mesh seen from /gm)).toHaveLength(2)
    expect(plain.out).not.toContain('\u001b')
    const tty = await cli(['status', '--watch', '--count', '2', '--api', api], { isTTY: true })
    // drawn twice from the top left, each line clearing the rest of the old one, the rest below cleared
    expect(tty.out.split('\u001b[H')).toHaveLength(3)
    expect(tty.out.match(/\u001b\[J/g)).toHaveLength(2)
    expect(tty.out).toMatch(/^\u001b\[Hmesh seen from [^\n]*\u001b\[K\n/)
    const json = await cli(['status', '--watch', '--count', '2', '--json', '--api', api])
    expect(json.out.trim().split('\n').map((l) => (JSON.parse(l) as { nodes: unknown[] }).nodes.length)).toEqual([2, 2])
    // no --count: runs until interrupted
    let interrupt: (() => void) | undefined
    let listening = false
    const watching = cli(['status', '--watch', '--api', api, '--json'], { onInterrupt: (fn) => { interrupt = fn; listening = true; return () => { listening = false } } })
    await waitUntil(() => interrupt != null)
    interrupt!()
    const stopped = await watching
    expect(stopped.code).toBe(0)
    expect(stopped.out.trim().split('\n').length).toBeGreaterThanOrEqual(1)
    expect(listening).toBe(false)
  })

  it('chat: an unknown model names the ones there are (exit 1); no input and no -p is a usage error', async () => {
    expect(await cli(['chat', 'nope', '-p', 'hi', '--api', api])).toEqual({ code: 1, out: '', err: "llmesh chat: unknown model 'nope': the mesh has tiny, other, broken\n" })
    expect(await cli(['chat', '--api', api])).toEqual({ code: 2, out: '', err: 'llmesh chat: nothing to read a conversation from: give a prompt with -p\n' })
    // an answer that fails: the agent's message, exit 1; in a conversation the next line is still read
    expect(await cli(['chat', 'broken', '-p', 'hi', '--api', api])).toEqual({ code: 1, out: '', err: 'llmesh chat: runner failed: boom\\x1b[2J\n' })
    expect(await cli(['chat', 'broken', '--api', api], { stdin: Readable.from(['a\nb\n']) })).toEqual({ code: 1, out: '', err: 'llmesh chat: runner failed: boom\\x1b[2J\n'.repeat(2) })
    // an empty input is an empty conversation
    expect(await cli(['chat', '--api', api], { stdin: Readable.from([]) })).toEqual({ code: 0, out: '', err: '' })
  })

  it('chat keeps the conversation: each line is sent with the turns before it; answers stream, escapes shown, not obeyed', async () => {
    seen.length = 0
    const r = await cli(['chat', '--api', api], { stdin: Readable.from(['first\n', '\n', 'second\n']) })
    expect(r).toEqual({ code: 0, out: 'answer 1\\x1b[2J\nanswer 3\\x1b[2J\n', err: '' })
    const sent = seen.filter((s) => s.url === '/v1/chat/completions').map((s) => JSON.parse(s.body) as { model: string, stream: boolean, messages: unknown[] })
    expect(sent.map((b) => [b.model, b.stream])).toEqual([['tiny', true], ['tiny', true]])
    expect(sent[1]!.messages).toEqual([
      { role: 'user', content: 'first' },
      { role: 'assistant', content: 'answer 1\u001b[2J' },
      { role: 'user', content: 'second' }
    ])
    const json = await cli(['chat', 'other', '-p', 'hi', '--max-tokens', '3', '--api', api, '--json'])
    expect(JSON.parse(json.out)).toEqual({ model: 'other', prompt: 'hi', reply: 'answer 1\u001b[2J', host: 'gpu-b', peerId: 'p-b' })
    expect(JSON.parse(seen.at(-1)!.body)).toMatchObject({ model: 'other', max_tokens: 3 })
  })

  it('chat: Ctrl-C ends a conversation waiting for input', async () => {
    const input = new PassThrough()
    let interrupt: (() => void) | undefined
    const chatting = cli(['chat', '--api', api], { stdin: input, onInterrupt: (fn) => { interrupt = fn; return () => {} } })
    input.write('one\n')
    await waitUntil(() => interrupt != null)
    interrupt!()
    const r = await chatting
    expect(r.code).toBe(0)
    input.destroy()
  })
})

/** Polls `ok` every 10 ms, for at most 5 s. */
async function waitUntil (ok: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !ok(); i++) await new Promise((resolve) => setTimeout(resolve, 10))
  if (!ok()) throw new Error('condition not met in 5 s')
}
