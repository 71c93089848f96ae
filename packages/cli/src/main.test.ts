import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { main, type CliIo } from './main.js'
import { resolveUpConfig } from './commands.js'

/** Runs the CLI in-process; what it printed, and its exit code. */
async function cli (...argv: string[]): Promise<{ code: number | undefined, out: string, err: string }> {
  let out = ''
  let err = ''
  const io: CliIo = { stdout: (t) => { out += t }, stderr: (t) => { err += t } }
  const code = await main(argv, io)
  return { code, out, err }
}

let dir: string
beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'llmesh-cli-')) })
afterAll(async () => { await rm(dir, { recursive: true, force: true }) })

describe('llmesh usage errors: one line naming the flag, exit 2', () => {
  it('a malformed --bootstrap names the flag and what an address looks like (not a parser message)', async () => {
    const r = await cli('up', '--bootstrap', 'garbage')
    expect(r.code).toBe(2)
    expect(r.err.trim().split('\n')).toHaveLength(1)
    expect(r.err).toMatch(/^llmesh up: --bootstrap 'garbage': not a multiaddr .*expected a multiaddr such as \/ip4\//)
    const peer = await cli('up', '--bootstrap', '/ip4/10.0.0.2/tcp/4778/p2p/garbage')
    expect(peer.code).toBe(2)
    expect(peer.err).toContain("--bootstrap '/ip4/10.0.0.2/tcp/4778/p2p/garbage': '/p2p/garbage' is not a peer id")
    expect(peer.err).not.toContain('multibase')
    const listen = await cli('up', '--listen', '/ip4/999.0.0.1/tcp/1')
    expect(listen.err).toMatch(/^llmesh up: --listen '\/ip4\/999.0.0.1\/tcp\/1': not a multiaddr/)
  })

  it('bad values of several flags give one report, a line per flag', async () => {
    const r = await cli('up', '--api-port', '70000', '--strategy', 'fastest-please', '--log-level', 'loud')
    expect(r.code).toBe(2)
    const lines = r.err.trim().split('\n')
    expect(lines[0]).toBe('llmesh up: invalid config:')
    expect(lines.slice(1).map((l) => l.trim().split(':')[0])).toEqual(["--api-port '70000'", "--strategy 'fastest-please'", "--log-level 'loud'"])
    expect((await cli('up', '--slots', 'two')).err).toBe("llmesh up: --slots 'two': expected an integer\n")
    expect((await cli('up', '--log-format', 'fancy')).err).toBe("llmesh up: --log-format 'fancy': expected json or pretty\n")
    expect((await cli('up', '--join', 'nonsense')).err).toMatch(/^llmesh up: --join: not a join token/)
  })

  it('unknown commands, unknown flags, missing values and stray arguments get a short usage hint', async () => {
    const cmd = await cli('frobnicate')
    expect(cmd).toMatchObject({ code: 2, out: '' })
    expect(cmd.err).toMatch(/^llmesh: unknown command 'frobnicate'\n'llmesh help' lists the commands: up, status/)
    const flag = await cli('status', '--frob')
    expect(flag).toMatchObject({ code: 2, err: "llmesh status: unknown option '--frob'\n'llmesh help' lists the commands and their options\n" })
    expect((await cli('up', '--api-port')).err).toMatch(/^llmesh up: '--api-port <value>' argument missing\n/)
    expect((await cli('status', 'extra')).err).toMatch(/^llmesh status: unexpected argument 'extra'\n/)
    expect(await cli('apikey', 'frob')).toMatchObject({ code: 2, err: "llmesh apikey: expected 'apikey add [--name N]', 'apikey list' or 'apikey revoke ID|NAME'\n" })
    expect((await cli('service', 'start')).code).toBe(2)
    expect((await cli('service', 'install', '--user', '--system', '--dry-run')).err).toBe('llmesh service: --user and --system: give one\n')
  })

  it('a failure while running is exit 1 with what failed', async () => {
    const r = await cli('status', '--data-dir', join(dir, 'no-agent-here'))
    expect(r.code).toBe(1)
    expect(r.err).toMatch(/^llmesh status: no running agent found in .*no-agent-here/)
  })

  it('help lists the exit codes; --version and -v print the package version', async () => {
    const help = await cli('help')
    expect(help.code).toBe(0)
    expect(help.out).toMatch(/exit codes: 0 done; 1 failed while running .*\n.*2 usage:/)
    const { version } = await import('../package.json', { with: { type: 'json' } }).then((m) => m.default as { version: string })
    expect(await cli('--version')).toEqual({ code: 0, out: `${version}\n`, err: '' })
    expect(await cli('-v')).toEqual({ code: 0, out: `${version}\n`, err: '' })
  })
})

describe('llmesh config check', () => {
  it('accepts a valid file (exit 0) and reports a bad one with the lines up gives (exit 1)', async () => {
    const good = join(dir, 'good.json')
    await writeFile(good, JSON.stringify({ name: 'gpu1', p2p: { bootstrap: ['/ip4/10.0.0.2/tcp/4778'] }, queue: { capacity: 8 } }))
    expect(await cli('config', 'check', good)).toEqual({ code: 0, out: `${good}: valid\n`, err: '' })

    const bad = join(dir, 'bad.json')
    await writeFile(bad, JSON.stringify({ colour: 'blue', api: { port: -1 }, p2p: { bootstrap: ['garbage'] } }))
    const r = await cli('config', 'check', bad)
    expect(r.code).toBe(1)
    const lines = r.err.trim().split('\n')
    expect(lines[0]).toBe(`invalid config (${bad}):`)
    expect(lines.slice(1).sort()).toEqual([
      expect.stringMatching(/^ {2}api\.port '-1': Too small/),
      '  colour: unknown key (every key: docs/CONFIG.md)',
      expect.stringMatching(/^ {2}p2p\.bootstrap\.0 'garbage': not a multiaddr/)
    ])
    // the same lines as 'llmesh up --config' (the same function), there as a usage error
    const up = await cli('up', '--config', bad)
    expect(up.code).toBe(2)
    expect(up.err).toBe(`llmesh up: ${r.err}`)
    await expect(resolveUpConfig({ config: bad })).rejects.toThrow(r.err.trim())

    // a single problem is one line, naming the file
    const one = join(dir, 'one.json')
    await writeFile(one, JSON.stringify({ p2p: { listen: ['/ip4/10.0.0.1/tcp/x'] } }))
    expect(await cli('config', 'check', one)).toMatchObject({ code: 1, err: expect.stringMatching(new RegExp(`^${one}: p2p\\.listen\\.0 '/ip4/10\\.0\\.0\\.1/tcp/x': not a multiaddr [^\\n]*\\n$`)) })

    const union = join(dir, 'union.json')
    await writeFile(union, JSON.stringify({ ollama: 'yes' }))
    expect((await cli('config', 'check', union)).err).toBe(`${union}: ollama 'yes': expected false or object\n`)

    const json = await cli('config', 'check', bad, '--json')
    expect(JSON.parse(json.out)).toMatchObject({ file: bad, valid: false, problems: r.err.trim().split('\n') })
  })

  it('reports a missing file and a file that is not a JSON object', async () => {
    const missing = join(dir, 'missing.json')
    expect(await cli('config', 'check', missing)).toEqual({ code: 1, out: '', err: `--config ${missing}: cannot read it (ENOENT)\n` })
    const list = join(dir, 'list.json')
    await writeFile(list, '[1, 2]')
    expect((await cli('config', 'check', list)).err).toBe(`--config ${list}: expected a JSON object of options (see docs/CONFIG.md)\n`)
    const broken = join(dir, 'broken.json')
    await writeFile(broken, '{ "name": ')
    expect((await cli('config', 'check', broken)).err).toMatch(/^--config .*broken.json: not JSON \(/)
    expect((await cli('config', 'check')).code).toBe(2)
  })
})

describe('llmesh service --dry-run', () => {
  it('prints the unit for the given config and touches nothing', async () => {
    const config = join(dir, 'svc.json')
    await writeFile(config, JSON.stringify({ name: 'gpu1', shutdownGraceMs: 20_000 }))
    const r = await cli('service', 'install', '--user', '--dry-run', '--config', config)
    expect(r).toMatchObject({ code: 0, err: '' })
    if (process.platform === 'linux') {
      expect(r.out).toContain(`"up" "--config" "${config}"`)
      // the agent's own limit: grace 20 s + STOP_HARD_LIMIT_MS 15 s, plus the 5 s margin
      expect(r.out).toContain('TimeoutStopSec=40\n')
    }
    const bad = join(dir, 'svc-bad.json')
    await writeFile(bad, JSON.stringify({ shutdownGraceMs: 'soon' }))
    expect(await cli('service', 'install', '--dry-run', '--config', bad)).toMatchObject({ code: 2, out: '' })
  })
})
