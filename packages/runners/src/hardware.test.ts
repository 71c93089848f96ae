import { describe, expect, it } from 'vitest'
import { parseNvidiaSmi, parseRocmSmi, parseSystemProfiler, probeGpus, probeHardware } from './hardware.js'

const MIB = 1024 * 1024

describe('hardware probe', () => {
  it('parses nvidia-smi CSV (MiB)', () => {
    expect(parseNvidiaSmi('NVIDIA GeForce RTX 4090, 24564, 23000\nNVIDIA A100-SXM4-80GB, 81920, 80000\n')).toEqual([
      { vendor: 'nvidia', name: 'NVIDIA GeForce RTX 4090', memTotalBytes: 24564 * MIB, memFreeBytes: 23000 * MIB },
      { vendor: 'nvidia', name: 'NVIDIA A100-SXM4-80GB', memTotalBytes: 81920 * MIB, memFreeBytes: 80000 * MIB }
    ])
    expect(parseNvidiaSmi('No devices were found\n')).toEqual([])
  })

  it('parses rocm-smi JSON', () => {
    const out = JSON.stringify({ card0: { 'VRAM Total Memory (B)': '25753026560', 'VRAM Total Used Memory (B)': '753026560', 'Card series': 'Radeon RX 7900 XTX' }, system: { 'Driver version': 'x' } })
    expect(parseRocmSmi(out)).toEqual([{ vendor: 'amd', name: 'Radeon RX 7900 XTX', memTotalBytes: 25753026560, memFreeBytes: 25000000000 }])
    expect(parseRocmSmi('garbage')).toEqual([])
  })

  it('parses system_profiler: Apple silicon has unified memory', () => {
    const out = JSON.stringify({ SPDisplaysDataType: [{ _name: 'Apple M2 Max', sppci_model: 'Apple M2 Max', spdisplays_vendor: 'sppci_vendor_Apple' }] })
    expect(parseSystemProfiler(out, 64 * 1024 * MIB)).toEqual([{ vendor: 'apple', name: 'Apple M2 Max', memTotalBytes: 64 * 1024 * MIB }])
  })

  it('absent or failing tools mean no GPU, not a crash', async () => {
    expect(await probeGpus({ platform: 'linux', run: async () => undefined })).toEqual([])
    expect(await probeGpus({ platform: 'darwin', run: async () => 'not json' })).toEqual([])
    // the real tools, whatever this machine has (here: none)
    const real = await probeGpus()
    expect(Array.isArray(real)).toBe(true)
    expect(probeHardware(real).gpus).toEqual(real)
    expect(probeHardware().cpus).toBeGreaterThan(0)
  })

  it('runs the vendor tools with the documented arguments', async () => {
    const calls: string[] = []
    const gpus = await probeGpus({
      platform: 'linux',
      run: async (cmd, args) => {
        calls.push(`${cmd} ${args.join(' ')}`)
        return cmd === 'nvidia-smi' ? 'Tesla T4, 15360, 15000\n' : undefined
      }
    })
    expect(gpus).toHaveLength(1)
    expect(calls).toContain('nvidia-smi --query-gpu=name,memory.total,memory.free --format=csv,noheader,nounits')
  })
})
