import { arch, cpus, platform, totalmem } from 'node:os'
import type { Hardware } from '@llmesh/protocol'

/** What this host has. GPUs are probed in a later step; absent tools mean "no GPU". */
export function probeHardware (): Hardware {
  return { cpus: cpus().length, memBytes: totalmem(), platform: platform(), arch: arch() }
}
