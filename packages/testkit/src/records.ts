import type { ModelInfo, NodeRecord, PeerMetrics, Pin, Placement, RunnerInfo, UnsignedNodeRecord, UnsignedPinsEntry, UnsignedPlacementsEntry } from '@llmesh/protocol'

/**
 * Records as tests need them: a valid value with plain figures, changed only where a test says
 * so. Types only from `@llmesh/protocol`, so the factories add no run-time dependency.
 */

/** The `i`-th runner of `peerId`'s record (id `<peerId>-r<i>`): a ready llama-server of 'tiny' with 2 slots. */
export function runnerInfo (peerId: string, i = 0, over: Partial<RunnerInfo> = {}): RunnerInfo {
  return { id: `${peerId}-r${i}`, kind: 'llama-server', model: 'tiny', state: 'ready', slots: 2, ...over }
}

/** A model of a record: a GGUF of 1 byte with digest 'd'. */
export function modelInfo (name: string, over: Partial<ModelInfo> = {}): ModelInfo {
  return { name, sizeBytes: 1, digest: 'd', format: 'gguf', ...over }
}

/** What a test sets of a record; the rest keeps the factory's figures. */
export interface RecordInit extends Partial<Omit<UnsignedNodeRecord, 'runners' | 'models'>> {
  /** one entry per runner, each completing `runnerInfo(peerId, i)`. @default [] */
  runners?: Array<Partial<RunnerInfo>>
  /** model names (`modelInfo(name)`) or whole models. @default [] */
  models?: Array<string | ModelInfo>
}

/**
 * `peerId`'s record before signing: name = peer id, version '0.1.0', protocol 1, no addresses,
 * api '127.0.0.1:1', one CPU, no models, no runners, started and updated at 0.
 */
export function unsignedRecord (peerId: string, init: RecordInit = {}): UnsignedNodeRecord {
  const { runners = [], models = [], ...rest } = init
  return {
    peerId,
    name: peerId,
    version: '0.1.0',
    protocol: 1,
    addrs: [],
    api: '127.0.0.1:1',
    hardware: { cpus: 1, memBytes: 1, platform: 'linux', arch: 'x64' },
    models: models.map((m) => typeof m === 'string' ? modelInfo(m) : m),
    runners: runners.map((r, i) => runnerInfo(peerId, i, r)),
    startedAt: 0,
    updatedAt: 0,
    ...rest
  }
}

/** `unsignedRecord` with a signature (@default '': for code that reads records, never checks them). */
export function nodeRecord (peerId: string, init: RecordInit & { sig?: string } = {}): NodeRecord {
  const { sig = '', ...rest } = init
  return { ...unsignedRecord(peerId, rest), sig }
}

/** A heartbeat's metrics: idle, no slots, nothing measured yet (the schema's defaults). */
export function peerMetrics (over: Partial<PeerMetrics> = {}): PeerMetrics {
  return { slotsBusy: 0, slotsTotal: 0, queueDepth: 0, tokensPerSec: 0, latencyMs: 0, successRate: 1, claims: {}, ...over }
}

/** A placement of `model`: planned at 0 for a request, changed only where a test says so. */
export function placement (model: string, over: Partial<Placement> = {}): Placement {
  return { model, state: 'planned', reason: 'request', since: 0, ...over }
}

/** `peerId`'s placements entry before signing: the given placements, updated at `updatedAt`. */
export function unsignedPlacementsEntry (peerId: string, placements: Placement[] = [], updatedAt = 0): UnsignedPlacementsEntry {
  return { peerId, placements, updatedAt }
}

/** `peerId`'s pins entry before signing: the given pins (`pinned` true, `at` 0 unless said), updated at `updatedAt`. */
export function unsignedPinsEntry (peerId: string, pins: Array<Partial<Pin> & { model: string }> = [], updatedAt = 0): UnsignedPinsEntry {
  return { peerId, pins: pins.map((p) => ({ pinned: true, at: 0, ...p })), updatedAt }
}
