import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { pino, type Logger } from 'pino'
import pretty from 'pino-pretty'
import {
  AGENT_INFO_FILE, API_KEYS_RECHECK_MS, Agent, CLUSTER_KEY_FILE, DEFAULT_API_HOST, DEFAULT_API_PORT, DEFAULT_OLLAMA_URL, DEFAULT_STRATEGY,
  STRATEGIES, STOP_HARD_LIMIT_MS, parseConfig
} from '@llmesh/agent'
import { formatStatus, resolveApi, resolveUpConfig, status, type UpFlags } from './commands.js'
import { invite, keygen } from './join-token.js'
import { apikeyAdd, apikeyList, apikeyRevoke, formatApiKeyAdded, formatApiKeys } from './apikey.js'
import { terminalSafe, terminalSafeJson, terminalSafeJsonLine, terminalSafeText } from './terminal.js'
import type { ApiTarget } from './api-client.js'
import { chatSession, chooseModel, type ChatSink } from './chat.js'
import { WATCH_INTERVAL_MS } from './constants.js'
import { formatModels, formatPeers, formatPins, formatPlacements, formatPs, models, peers, placements, ps, setPin } from './mesh-commands.js'
import type { Style } from './render.js'
import { EXIT_FAILURE, EXIT_USAGE, UsageError } from './usage-error.js'
import { processIo, type CliIo } from './io.js'
import { configCommand } from './config-check.js'
import { serviceCommand } from './service-command.js'

export type { CliIo } from './io.js'
export { checkConfig } from './config-check.js'

/** `items` joined by ", ", wrapped at 98 columns, lines after the first indented to `indent`. */
function wrapList (items: readonly string[], indent: number, first: number): string {
  const lines: string[] = []
  let line = ''
  for (const [i, item] of items.entries()) {
    const word = i < items.length - 1 ? `${item},` : item
    const width = lines.length === 0 ? first : indent
    if (line !== '' && width + line.length + 1 + word.length > 98) {
      lines.push(line)
      line = word
    } else {
      line = line === '' ? word : `${line} ${word}`
    }
  }
  lines.push(line)
  return lines.join(`\n${' '.repeat(indent)}`)
}

const STRATEGY_LIST = wrapList(STRATEGIES.map((s) => s === DEFAULT_STRATEGY ? `${s} (default)` : s), 34, 43)

const USAGE = `usage: llmesh <command> [options]

commands:
  up       start an agent on this host
             --config FILE        JSON config (flags below override it)
             --name NAME          host name shown in status
             --cluster ID         cluster id (agents join only their own cluster)
             --data-dir DIR       peer key, snapshot, ${AGENT_INFO_FILE}
             --api-host HOST      HTTP API address (default ${DEFAULT_API_HOST})
             --api-port PORT      HTTP API port (default ${DEFAULT_API_PORT}, 0 = any free port)
             --listen MULTIADDR   libp2p listen address (repeatable)
             --bootstrap MULTIADDR  peer to join (repeatable)
             --no-mdns            no multicast discovery (bootstrap addresses only)
             --model [NAME=]PATH  GGUF model to serve (repeatable)
             --model-dir DIR      folder of GGUF files for the catalog (repeatable)
             --ollama URL         adopt the Ollama server at URL (e.g. ${DEFAULT_OLLAMA_URL})
             --llama-server BIN   llama-server binary (default: on PATH, else embedded llama.cpp)
             --slots N            parallel slots per runner
             --threads N          CPU threads per llama-server (default: llama-server's)
             --strategy NAME      routing: ${STRATEGY_LIST}
             --log-level LEVEL    fatal|error|warn|info|debug|trace|silent
             --log-format FORMAT  json (default: one object a line) or pretty (for a terminal)
             --cluster-key FILE   the cluster key (default: DATA_DIR/${CLUSTER_KEY_FILE}, created on
                                  first start when listening off loopback)
             --join TOKEN         join a cluster: stores its key, dials its host ('llmesh invite')
             --open-mesh          listen off loopback without a key (anyone on the LAN may join)
  invite   print a join token (cluster key + this host's addresses) for another host
             --data-dir DIR       the running agent's data dir
             --cluster-key FILE   the key, when not in the data dir
             --json               machine-readable output
  keygen   write a new cluster key (mode 0600) to distribute yourself
             --out FILE           where (default: DATA_DIR/${CLUSTER_KEY_FILE}); never overwrites
             --data-dir DIR
             --json               machine-readable output
  status   the mesh as an agent sees it: hosts, membership, load, placements, pins
             --watch              redraw it every ${WATCH_INTERVAL_MS / 1000} s until Ctrl-C (off a terminal: a new
                                  table each time)
             --count N            with --watch: stop after N tables
  peers    membership, link, last heartbeat, version and addresses of every host
  models   every model of the mesh: size, quantization, context, the hosts that have it,
           where it is placed (a split: the blocks of each host), pins
  ps       the runners of the whole mesh: host, model, kind, slots in use, queue, tokens/s, memory
  placements  where each host runs or loads models, why, since when
  pin MODEL    keep MODEL loaded (--host H: on host H, a name or peer id; else anywhere)
  unpin MODEL  undo a pin (--host H: the pin on H)
  chat [MODEL] talk to MODEL through the mesh (default: the first model): reads lines, streams
           each answer, keeps the conversation; Ctrl-C or end of input ends it
             -p, --prompt TEXT    one question, one answer
             --max-tokens N       longest answer, tokens
           these commands ask an agent (API key, if needed: $LLMESH_API_KEY):
             --api URL            agent to ask (default: the agent of --data-dir)
             --data-dir DIR
             --json               machine-readable output (chat, status --watch: one object a
                                  line)
  apikey   API keys of the agent of --data-dir (needed when the API is off loopback)
           apikey add [--name N]  make a key and print it (once: only its hash is kept)
           apikey list            names, ids, creation times (never a key)
           apikey revoke ID|NAME  remove a key (a running agent drops it within ${API_KEYS_RECHECK_MS / 1000} s)
             --data-dir DIR  --json
  config   config check FILE      validate a JSON config, reporting what 'up' would (exit 0 valid,
                                  1 not); every key: docs/CONFIG.md
             --json               machine-readable output
  service  run 'llmesh up --config FILE' as a service (systemd on Linux, launchd on macOS):
           restarted on failure, stopped with SIGTERM (the agent leaves the mesh first)
           service install        write the unit, enable it and (re)start the agent
           service uninstall      stop and disable it and remove the unit
           service status         whether it is installed, enabled and running
             --user | --system    the user's or the system's services (default: --system as root)
             --config FILE        the host's config (default: ~/.config/llmesh/config.json
                                  under XDG_CONFIG_HOME; as root /etc/llmesh/config.json)
             --dry-run            print the unit, touch nothing
             --json               machine-readable output
  help     this text;  llmesh --version (-v): the version

exit codes: 0 done; 1 failed while running (no agent to ask, a port taken, an unknown model or host);
            2 usage: an unknown command or flag, a bad flag value or config file (nothing started)
`

/** The version of this package (its package.json, next to dist/ and src/). */
export function cliVersion (): string {
  return (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version
}

/** node:util parseArgs's errors (unknown option, missing value, stray argument) as one line. */
function parseArgsProblem (err: unknown): string | undefined {
  const code = (err as { code?: unknown }).code
  if (typeof code !== 'string' || !code.startsWith('ERR_PARSE_ARGS_')) return undefined
  const message = (err as Error).message
  const quoted = /'([^']+)'/.exec(message)?.[1]
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') return `unknown option '${quoted ?? message}'`
  if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') return `unexpected argument '${quoted ?? message}'`
  if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') return message.replace(/^Option /, '').replace(/\.$/, '')
  return message
}

/**
 * Runs one CLI command and returns its exit code (undefined: `up` keeps running); only bin.ts
 * exits the process. A usage error (EXIT_USAGE) is one line naming the flag or the command and
 * a pointer to the help; a failure while running (EXIT_FAILURE) is one line saying what failed.
 */
export async function main (argv: string[], io: CliIo = processIo()): Promise<number | undefined> {
  const [command, ...rest] = argv
  try {
    return await run(command, rest, io)
  } catch (err) {
    const what = command != null && COMMANDS.has(command) ? `llmesh ${command}` : 'llmesh'
    const usage = parseArgsProblem(err)
    if (usage != null) {
      io.stderr(`${what}: ${usage}\n'llmesh help' lists the commands and their options\n`)
      return EXIT_USAGE
    }
    if (err instanceof UsageError) {
      io.stderr(`${what}: ${err.message}\n`)
      return EXIT_USAGE
    }
    // a failure's text may carry an agent's or a peer's words (a runner's error): shown, not obeyed
    io.stderr(`${what}: ${terminalSafeText(err instanceof Error ? err.message : String(err))}\n`)
    return EXIT_FAILURE
  }
}

const COMMANDS = new Set(['up', 'status', 'peers', 'models', 'ps', 'placements', 'pin', 'unpin', 'chat', 'invite', 'keygen', 'apikey', 'config', 'service'])

async function run (command: string | undefined, rest: string[], io: CliIo): Promise<number | undefined> {
  switch (command) {
    case 'up': return await up(rest, io)
    case 'status': return await statusCommand(rest, io)
    case 'peers': return await viewCommand(rest, io, peers, formatPeers)
    case 'models': return await viewCommand(rest, io, models, formatModels)
    case 'ps': return await viewCommand(rest, io, ps, formatPs)
    case 'placements': return await viewCommand(rest, io, placements, formatPlacements)
    case 'pin': return await pinCommand(rest, io, true)
    case 'unpin': return await pinCommand(rest, io, false)
    case 'chat': return await chatCommand(rest, io)
    case 'invite': return await inviteCommand(rest, io)
    case 'keygen': return await keygenCommand(rest, io)
    case 'apikey': return await apikeyCommand(rest, io)
    case 'config': return await configCommand(rest, io)
    case 'service': return await serviceCommand(rest, io)
    case '--version':
    case '-v':
    case 'version':
      io.stdout(`${cliVersion()}\n`)
      return 0
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      io.stdout(USAGE)
      return 0
    default:
      io.stderr(`llmesh: unknown command '${command}'\n'llmesh help' lists the commands: ${[...COMMANDS].join(', ')}\n`)
      return EXIT_USAGE
  }
}

const LOG_FORMATS = ['json', 'pretty'] as const

/** pino, one JSON object a line on stdout; `pretty`: pino-pretty's readable lines, coloured on a terminal. */
function makeLogger (format: string, level: string, name: string, io: CliIo): Logger {
  if (format === 'pretty') return pino({ level, base: { name } }, pretty({ colorize: io.isTTY === true, sync: true, destination: 1 }))
  return pino({ level, base: { name } })
}

async function up (args: string[], io: CliIo): Promise<undefined> {
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      config: { type: 'string' },
      name: { type: 'string' },
      cluster: { type: 'string' },
      'data-dir': { type: 'string' },
      'api-host': { type: 'string' },
      'api-port': { type: 'string' },
      listen: { type: 'string', multiple: true },
      bootstrap: { type: 'string', multiple: true },
      'no-mdns': { type: 'boolean' },
      model: { type: 'string', multiple: true },
      'model-dir': { type: 'string', multiple: true },
      ollama: { type: 'string' },
      'llama-server': { type: 'string' },
      slots: { type: 'string' },
      threads: { type: 'string' },
      strategy: { type: 'string' },
      'log-level': { type: 'string' },
      'log-format': { type: 'string' },
      'cluster-key': { type: 'string' },
      'open-mesh': { type: 'boolean' },
      join: { type: 'string' }
    }
  })
  const format = values['log-format'] ?? 'json'
  if (!(LOG_FORMATS as readonly string[]).includes(format)) throw new UsageError(`--log-format '${format}': expected ${LOG_FORMATS.join(' or ')}`)
  const config = await resolveUpConfig(values as UpFlags)
  const logger = makeLogger(format, config.logLevel, config.name, io)
  const agent = new Agent(config, logger)
  let stopping = false
  const shutdown = (signal: string): void => {
    if (stopping) {
      // a second signal: stop waiting (runners die with the process or at the next start)
      logger.warn({ signal }, 'stopping now, without waiting')
      process.exit(1)
    }
    stopping = true
    logger.info({ signal, graceMs: config.shutdownGraceMs }, 'stopping')
    setTimeout(() => {
      logger.error({ limitMs: config.shutdownGraceMs + STOP_HARD_LIMIT_MS }, 'stop took too long: exiting')
      process.exit(1)
    }, config.shutdownGraceMs + STOP_HARD_LIMIT_MS).unref()
    agent.stop().then(() => process.exit(0), (err: unknown) => {
      logger.error({ err }, 'unclean stop')
      process.exit(1)
    })
  }
  process.on('SIGTERM', () => { shutdown('SIGTERM') })
  process.on('SIGINT', () => { shutdown('SIGINT') })
  try {
    await agent.start()
  } catch (err) {
    await agent.stop().catch(() => {})
    throw err
  }
  return undefined
}

/** The flags of every command that asks an agent. */
const API_OPTIONS = { api: { type: 'string' }, 'data-dir': { type: 'string' }, json: { type: 'boolean' } } as const

async function apiTarget (values: { api?: string, 'data-dir'?: string }): Promise<ApiTarget> {
  const apiKey = process.env['LLMESH_API_KEY']
  return { api: await resolveApi(values.api, values['data-dir']), ...(apiKey != null && apiKey !== '' ? { apiKey } : {}) }
}

function styleOf (io: CliIo): Style {
  return { tty: io.isTTY === true, color: io.isTTY === true && io.color !== false }
}

/** A positive integer flag value, else a usage error naming the flag. */
function positiveInt (flag: string, value: string | undefined): number | undefined {
  if (value == null) return undefined
  if (!/^[1-9]\d{0,8}$/.test(value)) throw new UsageError(`--${flag} '${value}': expected a positive integer`)
  return Number(value)
}

/** A command that reads the mesh: its data as JSON, or its table. */
async function viewCommand<T> (args: string[], io: CliIo, get: (target: ApiTarget) => Promise<T>, format: (data: T, style: Style) => string): Promise<number> {
  const { values } = parseArgs({ args, strict: true, options: API_OPTIONS })
  const data = await get(await apiTarget(values))
  io.stdout(values.json === true ? `${terminalSafeJson(data)}\n` : `${format(data, styleOf(io))}\n`)
  return 0
}

/**
 * `text` drawn over the screen from its top left: each line clears what is left of the old one
 * and what is below is cleared last, so a table redrawn every second does not flicker.
 */
function redraw (text: string): string {
  return `\u001b[H${text.split('\n').map((line) => `${line}\u001b[K`).join('\n')}\n\u001b[J`
}

async function statusCommand (args: string[], io: CliIo): Promise<number> {
  const { values } = parseArgs({
    args,
    strict: true,
    options: { ...API_OPTIONS, watch: { type: 'boolean' }, count: { type: 'string' } }
  })
  const count = positiveInt('count', values.count)
  if (count != null && values.watch !== true) throw new UsageError('--count goes with --watch')
  const target = await apiTarget(values)
  const style = styleOf(io)
  const json = values.json === true
  if (values.watch !== true) {
    const data = await status(target.api, target.apiKey)
    io.stdout(json ? `${terminalSafeJson(data)}\n` : `${formatStatus(data, style)}\n`)
    return 0
  }
  const stop = new AbortController()
  const off = io.onInterrupt?.(() => { stop.abort() })
  try {
    for (let shown = 0; !stop.signal.aborted;) {
      try {
        const data = await status(target.api, target.apiKey)
        if (json) io.stdout(`${terminalSafeJsonLine(data)}\n`)
        else if (style.tty) io.stdout(redraw(`${formatStatus(data, style)}\n\n${new Date().toLocaleTimeString()}, every ${WATCH_INTERVAL_MS / 1000} s; Ctrl-C to stop`))
        else io.stdout(`${formatStatus(data, style)}\n\n`)
      } catch (err) {
        // the first failure ends the command (nothing to watch); later ones are shown and retried
        if (shown === 0) throw err
        io.stderr(`llmesh status: ${terminalSafeText((err as Error).message)}\n`)
      }
      shown++
      if (count != null && shown >= count) break
      await sleep(WATCH_INTERVAL_MS, undefined, { signal: stop.signal }).catch(() => {})
    }
  } finally {
    off?.()
  }
  return 0
}

async function pinCommand (args: string[], io: CliIo, pinned: boolean): Promise<number> {
  const { values, positionals } = parseArgs({ args, strict: true, allowPositionals: true, options: { ...API_OPTIONS, host: { type: 'string' } } })
  if (positionals.length !== 1) throw new UsageError(`expected '${pinned ? 'pin' : 'unpin'} MODEL [--host H]'`)
  const data = await setPin(await apiTarget(values), positionals[0]!, values.host, pinned)
  io.stdout(values.json === true ? `${terminalSafeJson(data)}\n` : `${formatPins(data, styleOf(io))}\n`)
  return 0
}

async function chatCommand (args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    strict: true,
    allowPositionals: true,
    options: { ...API_OPTIONS, prompt: { type: 'string', short: 'p' }, 'max-tokens': { type: 'string' } }
  })
  if (positionals.length > 1) throw new UsageError(`unexpected argument '${positionals[1]!}' (a prompt goes after -p)`)
  const maxTokens = positiveInt('max-tokens', values['max-tokens'])
  const input = values.prompt != null ? Readable.from([`${values.prompt.replace(/\r?\n/g, ' ')}\n`]) : io.stdin
  if (input == null) throw new UsageError('nothing to read a conversation from: give a prompt with -p')
  const target = await apiTarget(values)
  const model = await chooseModel(target, positionals[0])
  const json = values.json === true
  const interactive = values.prompt == null && io.isTTY === true && !json
  if (interactive) io.stderr(`talking to ${terminalSafe(model)} through ${target.api}; Ctrl-C or Ctrl-D ends\n`)
  // whether the turn under way printed part of an answer (a failure then ends its line)
  let streamed = false
  const sink: ChatSink = json
    ? {
        text: () => {},
        turn: (t) => { io.stdout(`${terminalSafeJsonLine(t)}\n`) },
        failed: (message) => { io.stderr(`llmesh chat: ${terminalSafeText(message)}\n`) },
        ready: () => {}
      }
    : {
        text: (t) => { streamed = true; io.stdout(terminalSafeText(t)) },
        turn: () => { io.stdout('\n') },
        failed: (message) => { if (streamed) io.stdout('\n'); io.stderr(`llmesh chat: ${terminalSafeText(message)}\n`) },
        ready: () => { streamed = false; if (interactive) io.stdout('>>> ') }
      }
  const stop = new AbortController()
  const off = io.onInterrupt?.(() => { stop.abort() })
  try {
    const { failures } = await chatSession({ target, model, signal: stop.signal, ...(maxTokens != null ? { maxTokens } : {}) }, input, sink)
    if (interactive) io.stdout('\n')
    return failures > 0 ? EXIT_FAILURE : 0
  } finally {
    off?.()
    if (input === io.stdin) input.pause()
  }
}

async function inviteCommand (args: string[], io: CliIo): Promise<number> {
  const { values } = parseArgs({
    args,
    strict: true,
    options: { 'data-dir': { type: 'string' }, 'cluster-key': { type: 'string' }, json: { type: 'boolean' } }
  })
  const result = await invite({
    ...(values['data-dir'] != null ? { dataDir: values['data-dir'] } : {}),
    ...(values['cluster-key'] != null ? { clusterKeyFile: values['cluster-key'] } : {})
  })
  if (values.json === true) {
    io.stdout(`${JSON.stringify(result, null, 2)}\n`)
  } else {
    io.stdout(`${result.token}\n`)
    io.stderr(`cluster '${result.clusterId}', key ${result.keyId}, via ${result.addrs.join(' ')}\n` +
      'on the new host: llmesh up --join TOKEN (the token holds the cluster key: pass it as you would a password)\n')
  }
  return 0
}

async function keygenCommand (args: string[], io: CliIo): Promise<number> {
  const { values } = parseArgs({
    args,
    strict: true,
    options: { out: { type: 'string' }, 'data-dir': { type: 'string' }, json: { type: 'boolean' } }
  })
  const out = values.out ?? join(values['data-dir'] ?? parseConfig({}).dataDir, CLUSTER_KEY_FILE)
  const result = await keygen(out)
  io.stdout(values.json === true
    ? `${JSON.stringify(result, null, 2)}\n`
    : `wrote a cluster key to ${result.file} (key ${result.keyId}); give it to each host: llmesh up --cluster-key FILE\n`)
  return 0
}

async function apikeyCommand (args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    strict: true,
    allowPositionals: true,
    options: { 'data-dir': { type: 'string' }, name: { type: 'string' }, json: { type: 'boolean' } }
  })
  const [sub, ...more] = positionals
  const json = values.json === true
  const out = (data: unknown, text: string): number => { io.stdout(json ? `${terminalSafeJson(data)}\n` : `${text}\n`); return 0 }
  if (sub === 'add' && more.length === 0) {
    const added = await apikeyAdd(values)
    return out({ key: added.key, ...added.info }, formatApiKeyAdded(added))
  }
  if (sub === 'list' && more.length === 0) {
    const keys = await apikeyList(values)
    return out(keys, formatApiKeys(keys))
  }
  if (sub === 'revoke' && more.length === 1) {
    const gone = await apikeyRevoke(values, more[0]!)
    return out(gone, `revoked API key '${gone.name}' (id ${gone.id})`)
  }
  throw new UsageError(`expected 'apikey add [--name N]', 'apikey list' or 'apikey revoke ID|NAME'`)
}
