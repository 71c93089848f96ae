import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FastifyRequest } from 'fastify'
import { LlmeshError } from '@llmesh/protocol'
import { checkApiKey, checkHostAndOrigin, parseHostHeader } from './guards.js'
import { isLoopbackHost } from '../loopback.js'
import { ApiKeyStore, addApiKey, apiKeysPath } from './api-keys.js'

const request = (url: string, headers: Record<string, string>): FastifyRequest => ({ url, headers }) as unknown as FastifyRequest

function codeOf (fn: () => void): string | undefined {
  try { fn() } catch (err) { return (err as LlmeshError).code }
  return undefined
}

async function asyncCodeOf (p: Promise<void>): Promise<string | undefined> {
  try { await p } catch (err) { return (err as LlmeshError).code }
  return undefined
}

describe('loopback names and Host headers', () => {
  it('knows loopback names and addresses', () => {
    for (const h of ['localhost', 'LOCALHOST', 'a.localhost', '127.0.0.1', '127.1.2.3', '::1', '[::1]', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1']) expect(isLoopbackHost(h), h).toBe(true)
    for (const h of ['0.0.0.0', '10.0.0.1', '128.0.0.1', 'localhost.evil.example', '::', '::2', 'example.com', '']) expect(isLoopbackHost(h), h).toBe(false)
  })

  it('parses Host headers', () => {
    expect(parseHostHeader('127.0.0.1:11435')).toEqual({ host: '127.0.0.1', port: 11435 })
    expect(parseHostHeader('[::1]:8080')).toEqual({ host: '::1', port: 8080 })
    expect(parseHostHeader('LocalHost')).toEqual({ host: 'localhost', port: 80 })
    for (const bad of ['a:b:c', 'x:99999', 'host:', '[::1', 'a b']) expect(parseHostHeader(bad), bad).toBeUndefined()
  })
})

describe('Host and Origin check (loopback API)', () => {
  const opts = { listenHost: '127.0.0.1', port: () => 11435, allowedHosts: ['proxy.lan'], keys: new ApiKeyStore('/nonexistent') }
  const check = (headers: Record<string, string>): string | undefined => codeOf(() => { checkHostAndOrigin(request('/v1/models', headers), opts) })

  it('takes loopback hosts with the API port, the configured host and allowed names', () => {
    for (const host of ['127.0.0.1:11435', 'localhost:11435', '[::1]:11435', 'proxy.lan:11435']) expect(check({ host }), host).toBeUndefined()
    expect(check({})).toBeUndefined()
  })

  it('refuses a rebound name, another port, and a Host that does not parse: 403', () => {
    for (const host of ['evil.example:11435', 'evil.example', '127.0.0.1:80', 'localhost', '127.0.0.1:11435\u0000x']) expect(check({ host }), host).toBe('FORBIDDEN')
  })

  it('refuses pages of other origins, null included; takes loopback pages on any port', () => {
    const host = '127.0.0.1:11435'
    for (const origin of ['http://evil.example', 'https://127.0.0.1.evil.example', 'null', 'file://', 'chrome-extension://abc']) expect(check({ host, origin }), origin).toBe('FORBIDDEN')
    for (const origin of ['http://localhost:3000', 'http://127.0.0.1:11435', 'http://[::1]:5173', 'http://proxy.lan']) expect(check({ host, origin }), origin).toBeUndefined()
  })
})

describe('API key check', () => {
  let dir: string
  beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'llmesh-guard-')) })
  afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

  it('on loopback: open while no key exists, closed once one does; /health always open', async () => {
    const keys = new ApiKeyStore(apiKeysPath(dir), { recheckMs: 0 })
    await keys.load()
    expect(await asyncCodeOf(checkApiKey(request('/v1/models', {}), keys, false))).toBeUndefined()
    const { key } = await addApiKey(dir)
    expect(await asyncCodeOf(checkApiKey(request('/v1/models', {}), keys, false))).toBe('UNAUTHORIZED')
    expect(await asyncCodeOf(checkApiKey(request('/v1/models', { authorization: 'Bearer nope' }), keys, false))).toBe('UNAUTHORIZED')
    expect(await asyncCodeOf(checkApiKey(request('/v1/models', { authorization: `Basic ${key}` }), keys, false))).toBe('UNAUTHORIZED')
    expect(await asyncCodeOf(checkApiKey(request('/v1/models', { authorization: `Bearer ${key}` }), keys, false))).toBeUndefined()
    expect(await asyncCodeOf(checkApiKey(request('/v1/models', { authorization: `bearer  ${key}` }), keys, false))).toBeUndefined()
    expect(await asyncCodeOf(checkApiKey(request('/health', {}), keys, false))).toBeUndefined()
  })

  it('off loopback: a key is needed even when none exists (all revoked)', async () => {
    const keys = new ApiKeyStore(apiKeysPath(dir), { recheckMs: 0 })
    await keys.load()
    let message = ''
    try { await checkApiKey(request('/v1/models', { authorization: 'Bearer x' }), keys, true) } catch (err) { message = (err as Error).message }
    expect(message).toMatch(/no API key exists: create one with llmesh apikey add/)
    expect(await asyncCodeOf(checkApiKey(request('/health', {}), keys, true))).toBeUndefined()
  })
})
