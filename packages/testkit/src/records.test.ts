import { describe, expect, it } from 'vitest'
import { NodeRecordSchema, PeerMetricsSchema } from '@llmesh/protocol'
import { nodeRecord, peerMetrics, runnerInfo } from './records.js'

describe('record factories', () => {
  it('build records and metrics the protocol schemas take as they are', () => {
    const r = nodeRecord('a', { runners: [{}, { model: 'm', slots: 4 }], models: ['tiny'], updatedAt: 5 })
    expect(NodeRecordSchema.parse(r)).toEqual(r)
    expect(r.runners).toEqual([runnerInfo('a', 0), runnerInfo('a', 1, { model: 'm', slots: 4 })])
    expect(peerMetrics()).toEqual(PeerMetricsSchema.parse({}))
    expect(PeerMetricsSchema.parse(peerMetrics({ slotsBusy: 1, slotsTotal: 2 }))).toMatchObject({ slotsBusy: 1, slotsTotal: 2 })
  })
})
