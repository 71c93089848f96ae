/**
 * What this host has: CPUs, RAM, GPUs with total / free VRAM. GPUs are found by the vendor
 * tools where present (nvidia-smi, rocm-smi, Apple's system_profiler); a missing tool, one that
 * fails or one that answers nonsense means "no GPU of that vendor", never a crash.
 */
import { execFile } from 'node:child_process'
import { arch, cpus, platform, totalmem } from 'node:os'
import type { Hardware } from '@llmesh/protocol'
import { GPU_PROBE_TIMEOUT_MS } from './constants.js'

export type GpuInfo = NonNullable<Hardware['gpus']>[number]

/** Runs a tool, resolving its stdout, or undefined when it is absent, fails or times out. */
export type ToolRunner = (cmd: string, args: string[]) => Promise<string | undefined>

const MIB = 1024 * 1024

export function runTool (timeoutMs = GPU_PROBE_TIMEOUT_MS): ToolRunner {
  return async (cmd, args) => await new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 4 * MIB, windowsHide: true }, (err, stdout) => {
      resolve(err == null ? stdout : undefined)
    })
  })
}

/** `nvidia-smi --query-gpu=name,memory.total,memory.free --format=csv,noheader,nounits` (MiB). */
export function parseNvidiaSmi (out: string): GpuInfo[] {
  const gpus: GpuInfo[] = []
  for (const line of out.split('\n')) {
    const cols = line.split(',').map((c) => c.trim())
    if (cols.length < 3) continue
    const total = Number(cols[1])
    const free = Number(cols[2])
    if (!Number.isFinite(total) || total <= 0) continue
    gpus.push({ vendor: 'nvidia', name: cols[0] ?? 'NVIDIA GPU', memTotalBytes: total * MIB, ...(Number.isFinite(free) ? { memFreeBytes: free * MIB } : {}) })
  }
  return gpus
}

/**
 * `rocm-smi --showmeminfo vram --showproductname --json`: an object per card
 * (`card0`: { "VRAM Total Memory (B)": "...", "VRAM Total Used Memory (B)": "...", "Card series": "..." }).
 */
export function parseRocmSmi (out: string): GpuInfo[] {
  let json: Record<string, Record<string, string>>
  try {
    json = JSON.parse(out) as Record<string, Record<string, string>>
  } catch {
    return []
  }
  const gpus: GpuInfo[] = []
  for (const [card, fields] of Object.entries(json)) {
    if (!/^card\d+/.test(card) || fields == null || typeof fields !== 'object') continue
    const total = Number(fields['VRAM Total Memory (B)'])
    const used = Number(fields['VRAM Total Used Memory (B)'])
    if (!Number.isFinite(total) || total <= 0) continue
    const name = fields['Card series'] ?? fields['Card SKU'] ?? fields['Card model'] ?? 'AMD GPU'
    gpus.push({ vendor: 'amd', name, memTotalBytes: total, ...(Number.isFinite(used) ? { memFreeBytes: Math.max(0, total - used) } : {}) })
  }
  return gpus
}

/** Parses sizes like "8 GB", "1536 MB" as system_profiler prints them. */
function parseSize (s: unknown): number | undefined {
  if (typeof s !== 'string') return undefined
  const m = /([\d.]+)\s*(TB|GB|MB)/i.exec(s)
  if (m?.[1] == null || m[2] == null) return undefined
  const unit = m[2].toUpperCase() === 'TB' ? 1024 * 1024 * MIB : m[2].toUpperCase() === 'GB' ? 1024 * MIB : MIB
  return Number(m[1]) * unit
}

/**
 * `system_profiler SPDisplaysDataType -json`. Discrete GPUs report `spdisplays_vram`; Apple
 * silicon shares RAM with the GPU (unified memory), so its total is the host's RAM.
 */
export function parseSystemProfiler (out: string, unifiedMemBytes: number): GpuInfo[] {
  let json: { SPDisplaysDataType?: Array<Record<string, unknown>> }
  try {
    json = JSON.parse(out) as typeof json
  } catch {
    return []
  }
  const gpus: GpuInfo[] = []
  for (const d of json.SPDisplaysDataType ?? []) {
    const name = String(d['sppci_model'] ?? d['_name'] ?? 'GPU')
    const vram = parseSize(d['spdisplays_vram'] ?? d['spdisplays_vram_shared'])
    const vendorText = String(d['spdisplays_vendor'] ?? '')
    const apple = /apple/i.test(name) || /apple/i.test(vendorText)
    if (apple) gpus.push({ vendor: 'apple', name, memTotalBytes: unifiedMemBytes })
    else if (vram != null) gpus.push({ vendor: /nvidia/i.test(vendorText + name) ? 'nvidia' : /amd|ati/i.test(vendorText + name) ? 'amd' : 'other', name, memTotalBytes: vram })
  }
  return gpus
}

export interface GpuProbeOptions {
  /** how tools are run (tests inject fakes). @default runTool() */
  run?: ToolRunner
  /** @default os.platform() */
  platform?: NodeJS.Platform
}

/** Every GPU the vendor tools report; empty when none (or no tools). */
export async function probeGpus (opts: GpuProbeOptions = {}): Promise<GpuInfo[]> {
  const run = opts.run ?? runTool()
  const os = opts.platform ?? platform()
  if (os === 'darwin') {
    const out = await run('system_profiler', ['SPDisplaysDataType', '-json'])
    return out != null ? parseSystemProfiler(out, totalmem()) : []
  }
  const [nv, amd] = await Promise.all([
    run('nvidia-smi', ['--query-gpu=name,memory.total,memory.free', '--format=csv,noheader,nounits']),
    run('rocm-smi', ['--showmeminfo', 'vram', '--showproductname', '--json'])
  ])
  return [...(nv != null ? parseNvidiaSmi(nv) : []), ...(amd != null ? parseRocmSmi(amd) : [])]
}

/**
 * What this host has, synchronously: CPUs and RAM, plus `gpus` when given (probe them once
 * with `probeGpus`, which runs tools, and pass the result).
 */
export function probeHardware (gpus?: GpuInfo[]): Hardware {
  const hw: Hardware = { cpus: cpus().length, memBytes: totalmem(), platform: platform(), arch: arch() }
  if (gpus != null) hw.gpus = gpus
  return hw
}
