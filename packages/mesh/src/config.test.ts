import { describe, expect, it } from 'vitest'
import {
  DEFAULT_P2P_PORT, HEARTBEAT_INTERVAL_MS, MDNS_INTERVAL_MS, MIN_ANNOUNCED_INTERVAL_MS, PEER_FRAME_GAP_MS, PEER_HEAD_TIMEOUT_MS, WRITE_STALL_MS
} from './constants.js'
import { MembershipConfigSchema, P2pConfigSchema, PeerLimitsConfigSchema } from './config.js'
import { LAN_TIMINGS } from './membership.js'

describe('the mesh\'s config schemas', () => {
  it('default to the mesh\'s named constants', () => {
    expect(P2pConfigSchema.parse(undefined)).toEqual({
      listen: [`/ip4/0.0.0.0/tcp/${DEFAULT_P2P_PORT}`], bootstrap: [], mdns: true, mdnsIntervalMs: MDNS_INTERVAL_MS, heartbeatIntervalMs: HEARTBEAT_INTERVAL_MS
    })
    expect(MembershipConfigSchema.parse(undefined)).toEqual(LAN_TIMINGS)
    expect(PeerLimitsConfigSchema.parse(undefined)).toEqual({ headTimeoutMs: PEER_HEAD_TIMEOUT_MS, frameGapMs: PEER_FRAME_GAP_MS, writeStallMs: WRITE_STALL_MS })
  })

  it('refuses a heartbeat period peers would raise, unordered timings and unknown keys', () => {
    expect(P2pConfigSchema.safeParse({ heartbeatIntervalMs: MIN_ANNOUNCED_INTERVAL_MS }).success).toBe(true)
    expect(P2pConfigSchema.safeParse({ heartbeatIntervalMs: MIN_ANNOUNCED_INTERVAL_MS - 1 }).success).toBe(false)
    expect(MembershipConfigSchema.safeParse({ suspectAfterMs: LAN_TIMINGS.deadAfterMs }).success).toBe(false)
    expect(PeerLimitsConfigSchema.safeParse({ stallMs: 1 }).success).toBe(false)
  })

  it('gives every parse its own arrays', () => {
    const a = P2pConfigSchema.parse({})
    a.bootstrap.push('/ip4/10.0.0.2/tcp/4778')
    expect(P2pConfigSchema.parse({}).bootstrap).toEqual([])
  })
})
