import { describe, expect, it } from 'vitest'
import { parseConfig } from './config.js'

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
