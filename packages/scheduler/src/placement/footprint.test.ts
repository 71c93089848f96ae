import { describe, expect, it } from 'vitest'
import { modelInfo, mulberry32 } from '@llmesh/testkit'
import {
  EVICT_DRAIN_MS, IDLE_UNLOAD_MS, KV_ELEMENT_BYTES, KV_SHARE_OF_WEIGHTS_PER_TOKEN, PLACEMENT_MEMORY_SHARE, RUNNER_OVERHEAD_BYTES, SCALE_DOWN_AFTER_MS, SCALE_UP_AFTER_MS
} from '../constants.js'
import { PlacementConfigSchema } from '../config.js'
import { footprint, footprintBytes } from './footprint.js'
import { hostModelMemBytes } from './room.js'

describe('footprintBytes', () => {
  const random = mulberry32(18)
  const size = (): number => Math.floor(random() * 2 ** 34)

  it('is weights + the KV cache the model gives per token + the overhead', () => {
    for (let i = 0; i < 20; i++) {
      const sizeBytes = size()
      const kvBytesPerToken = 1 + Math.floor(random() * 2 ** 20)
      const ctx = 1 + Math.floor(random() * 32_768)
      const m = modelInfo('m', { sizeBytes, kvBytesPerToken, layers: 32, embeddingLength: 4096 })
      expect(footprintBytes(m, ctx)).toBe(sizeBytes + kvBytesPerToken * ctx + RUNNER_OVERHEAD_BYTES)
      expect(footprint(m, ctx).kv).toBe('model')
    }
  })

  it('estimates the KV cache from layers and width, else from the weights', () => {
    const sizeBytes = size()
    const layers = 1 + Math.floor(random() * 80)
    const embeddingLength = 1 + Math.floor(random() * 8192)
    const shaped = footprint(modelInfo('m', { sizeBytes, layers, embeddingLength }), 4096)
    expect(shaped).toMatchObject({ kv: 'shape', kvBytes: 2 * layers * embeddingLength * KV_ELEMENT_BYTES * 4096 })
    const bare = footprint(modelInfo('m', { sizeBytes }), 4096)
    expect(bare).toMatchObject({ kv: 'share', kvBytes: Math.ceil(sizeBytes * KV_SHARE_OF_WEIGHTS_PER_TOKEN * 4096), weightsBytes: sizeBytes })
    expect(bare.totalBytes).toBe(bare.weightsBytes + bare.kvBytes + bare.overheadBytes)
    expect(footprintBytes(modelInfo('m', { sizeBytes }), 2 * 4096)).toBeGreaterThan(bare.totalBytes)
  })
})

describe('hostModelMemBytes and the config', () => {
  const cfg = PlacementConfigSchema.parse({})
  const hw = { cpus: 8, memBytes: 64 * 2 ** 30, platform: 'linux', arch: 'x64' }

  it('has the documented defaults and rejects unknown keys', () => {
    expect(cfg).toEqual({ memoryShare: PLACEMENT_MEMORY_SHARE, loadAnyway: false, idleUnloadMs: IDLE_UNLOAD_MS, scaleUpAfterMs: SCALE_UP_AFTER_MS, scaleDownAfterMs: SCALE_DOWN_AFTER_MS, evictDrainMs: EVICT_DRAIN_MS, pins: [] })
    expect(PlacementConfigSchema.safeParse({ memoryBytez: 1 }).success).toBe(false)
    expect(PlacementConfigSchema.safeParse({ pins: [{ model: 'm', host: 'h', extra: 1 }] }).success).toBe(false)
  })

  it('takes the config figure, else the GPUs, else a share of RAM', () => {
    expect(hostModelMemBytes(hw, { ...cfg, memoryBytes: 123 })).toBe(123)
    expect(hostModelMemBytes(hw, cfg)).toBe(Math.floor(hw.memBytes * PLACEMENT_MEMORY_SHARE))
    const gpus = [{ vendor: 'nvidia' as const, name: 'a', memTotalBytes: 24 * 2 ** 30 }, { vendor: 'nvidia' as const, name: 'b', memTotalBytes: 12 * 2 ** 30 }]
    expect(hostModelMemBytes({ ...hw, gpus }, cfg)).toBe(36 * 2 ** 30)
    expect(hostModelMemBytes({ ...hw, gpus: [{ vendor: 'apple', name: 'm', memTotalBytes: hw.memBytes }] }, { memoryShare: 0.5 })).toBe(hw.memBytes / 2)
  })
})
