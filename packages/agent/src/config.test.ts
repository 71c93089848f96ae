import { describe, expect, it } from 'vitest'
import { ErrorCodes, LlmeshError, MAX_RUNNER_SLOTS } from '@llmesh/protocol'
import {
  DEFAULT_P2P_PORT, HEARTBEAT_INTERVAL_MS, LAN_TIMINGS, MDNS_INTERVAL_MS, MIN_ANNOUNCED_INTERVAL_MS, PEER_FRAME_GAP_MS, PEER_HEAD_TIMEOUT_MS,
  WRITE_STALL_MS
} from '@llmesh/mesh'
import { DEFAULT_STRATEGY, QUEUE_CAPACITY, QUEUE_DEADLINE_MS } from '@llmesh/scheduler'
import { DEFAULT_CTX_SIZE, DEFAULT_OLLAMA_URL, DEFAULT_SLOTS, DEFAULT_STALL_TIMEOUT_MS } from '@llmesh/runners'
import { ConfigError, parseConfig } from './config.js'
import { SHUTDOWN_GRACE_MS } from './constants.js'

describe('api config', () => {
  it('has loopback, bounded defaults for the HTTP API', () => {
    expect(parseConfig({}).api).toEqual({
      host: '127.0.0.1',
      port: 11435,
      bodyLimit: 8 * 1024 * 1024,
      allowedHosts: [],
      headersTimeoutMs: 10_000,
      requestTimeoutMs: 60_000,
      keepAliveTimeoutMs: 72_000,
      maxConnections: 1024
    })
  })

  it('refuses a head timeout longer than the request timeout, and unknown keys', () => {
    expect(() => parseConfig({ api: { headersTimeoutMs: 5000, requestTimeoutMs: 1000 } })).toThrow(/api: needs headersTimeoutMs <= requestTimeoutMs/)
    expect(() => parseConfig({ api: { maxConnections: 0 } })).toThrow(/api.maxConnections/)
    expect(() => parseConfig({ api: { apiKey: 'x' } })).toThrow(/api: Unrecognized key/)
  })
})

describe('agent config', () => {
  it('takes its defaults from the named constants of the packages that own them', () => {
    const c = parseConfig({ ollama: {} })
    expect(c.p2p).toMatchObject({ heartbeatIntervalMs: HEARTBEAT_INTERVAL_MS, mdnsIntervalMs: MDNS_INTERVAL_MS })
    expect(c.membership).toEqual(LAN_TIMINGS)
    expect(c.queue).toEqual({ capacity: QUEUE_CAPACITY, deadlineMs: QUEUE_DEADLINE_MS })
    expect(c.strategy).toBe(DEFAULT_STRATEGY)
    expect(c.llamaServer).toEqual({ slots: DEFAULT_SLOTS, ctxSize: DEFAULT_CTX_SIZE, extraArgs: [], routerChild: true })
    expect(c.ollama).toEqual({ url: DEFAULT_OLLAMA_URL })
    expect(c.stallTimeoutMs).toBe(DEFAULT_STALL_TIMEOUT_MS)
    expect(c.limits).toEqual({ headTimeoutMs: PEER_HEAD_TIMEOUT_MS, frameGapMs: PEER_FRAME_GAP_MS, writeStallMs: WRITE_STALL_MS })
    expect(c.p2p.listen).toEqual([`/ip4/0.0.0.0/tcp/${DEFAULT_P2P_PORT}`])
    expect(c.shutdownGraceMs).toBe(SHUTDOWN_GRACE_MS)
    expect(() => parseConfig({ llamaServer: { slots: MAX_RUNNER_SLOTS + 1 } })).toThrow(/llamaServer.slots/)
  })

  it('says which option of the mesh\'s part is bad, one line each, as the agent\'s own', () => {
    expect(parseConfig({ p2p: { heartbeatIntervalMs: MIN_ANNOUNCED_INTERVAL_MS } }).p2p.heartbeatIntervalMs).toBe(MIN_ANNOUNCED_INTERVAL_MS)
    const message = (input: unknown): string => {
      try { parseConfig(input) } catch (e) { return (e as Error).message }
      return 'valid'
    }
    expect(message({ p2p: { heartbeatIntervalMs: 10, bogus: 1 }, membership: { suspectAfterMs: 9000 }, limits: { headTimeoutMs: 1 } })).toBe([
      'invalid llmesh config:',
      '  p2p.heartbeatIntervalMs: Too small: expected number to be >=50',
      '  p2p: Unrecognized key: "bogus"',
      '  membership: needs suspectAfterMs < deadAfterMs < pruneAfterMs',
      '  limits.headTimeoutMs: Too small: expected number to be >=100'
    ].join('\n'))
    expect(message({ limits: { writeStallMs: 4_000_000 }, p2p: { mdns: 'yes' } })).toBe([
      'invalid llmesh config:',
      '  p2p.mdns: Invalid input: expected boolean, received string',
      '  limits.writeStallMs: Too big: expected number to be <=3600000'
    ].join('\n'))
  })

  it('is frozen all the way down', () => {
    const c = parseConfig({ models: [{ path: '/m.gguf' }], p2p: { bootstrap: ['/ip4/10.0.0.2/tcp/4778'] } })
    expect(() => { (c as { name: string }).name = 'x' }).toThrow(TypeError)
    expect(() => { (c.api as { port: number }).port = 1 }).toThrow(TypeError)
    expect(() => { (c.p2p.bootstrap as string[]).push('/ip4/10.0.0.3/tcp/4778') }).toThrow(TypeError)
    expect(() => { (c.models[0] as { name?: string }).name = 'x' }).toThrow(TypeError)
    expect(c.p2p.bootstrap).toEqual(['/ip4/10.0.0.2/tcp/4778'])
  })

  it('fails with INVALID_CONFIG, a code of the error catalogue', () => {
    let err: unknown
    try { parseConfig({ bogus: 1 }) } catch (e) { err = e }
    expect(err).toBeInstanceOf(ConfigError)
    expect(err).toBeInstanceOf(LlmeshError)
    expect(err).toMatchObject({ name: 'ConfigError', code: 'INVALID_CONFIG', message: expect.stringMatching(/^invalid llmesh config:\n {2}\(config\): Unrecognized key/) })
    expect(Object.hasOwn(ErrorCodes, (err as LlmeshError).code)).toBe(true)
  })
})
