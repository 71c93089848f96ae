import { z } from 'zod'

/** A model a host can serve. Names, sizes and digests only: local paths never leave the host. */
export const ModelInfoSchema = z.object({
  name: z.string().min(1).max(256),
  sizeBytes: z.number().int().nonnegative(),
  /** sha256 of the file's first 1 MiB and its size, hex: cheap, stable, tells copies apart */
  digest: z.string().max(128),
  format: z.enum(['gguf']).default('gguf')
})
export type ModelInfo = z.infer<typeof ModelInfoSchema>

export const RunnerKinds = ['llama-server'] as const
export const RunnerStates = ['starting', 'loading', 'ready', 'busy', 'failed', 'stopped'] as const

export const RunnerInfoSchema = z.object({
  id: z.string().min(1).max(128),
  kind: z.enum(RunnerKinds),
  model: z.string().min(1).max(256),
  state: z.enum(RunnerStates),
  slots: z.number().int().nonnegative()
})
export type RunnerInfo = z.infer<typeof RunnerInfoSchema>
export type RunnerState = RunnerInfo['state']

export const HardwareSchema = z.object({
  cpus: z.number().int().nonnegative(),
  memBytes: z.number().nonnegative(),
  platform: z.string().max(64),
  arch: z.string().max(64)
})
export type Hardware = z.infer<typeof HardwareSchema>

/**
 * The durable record each peer owns in the cluster document's `nodes` map, keyed by its peer
 * id. Only that peer writes it. Fast-changing numbers (load, heartbeats) are NOT here: they
 * travel on the metrics channel.
 */
export const NodeRecordSchema = z.object({
  peerId: z.string().min(1).max(128),
  name: z.string().min(1).max(128),
  version: z.string().max(64),
  protocol: z.number().int(),
  /** multiaddrs other agents dial */
  addrs: z.array(z.string().max(512)).max(32),
  /** the agent's local HTTP API, host:port */
  api: z.string().max(256),
  hardware: HardwareSchema,
  models: z.array(ModelInfoSchema).max(1024),
  runners: z.array(RunnerInfoSchema).max(256),
  startedAt: z.number(),
  updatedAt: z.number()
})
export type NodeRecord = z.infer<typeof NodeRecordSchema>
