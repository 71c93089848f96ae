import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { ClusterDoc, type ClusterDocOptions } from '@llmesh/state'
import type { UnsignedNodeRecord } from '@llmesh/protocol'
import { unsignedRecord } from '@llmesh/testkit'
import { loadOrCreateKey, peerIdOfKey, recordSigner, recordVerifier } from '@llmesh/mesh'
import { DurableFile, openClusterDoc } from './persist.js'

const log = pino({ level: 'silent' })
let dir: string
let keyDir: string
let PEER: string
/** a real key's signer and verifier: the document holds signed records only */
let opts: ClusterDocOptions
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'llmesh-persist-'))
  keyDir = await mkdtemp(join(tmpdir(), 'llmesh-persist-key-'))
  const key = await loadOrCreateKey(join(keyDir, 'peer.key'))
  PEER = peerIdOfKey(key)
  opts = { verifier: recordVerifier(), signer: recordSigner(key) }
})
afterEach(async () => { await Promise.all([dir, keyDir].map(async (d) => { await rm(d, { recursive: true, force: true }) })) })

const record = (i: number): UnsignedNodeRecord => unsignedRecord(PEER, { name: `host-${i}`, startedAt: 1, updatedAt: i })

describe('DurableFile', () => {
  it('coalesces concurrent saves of a changing document into a file that decodes to the latest state', async () => {
    const file = new DurableFile(join(dir, 'cluster.snapshot'))
    const doc = new ClusterDoc(PEER, undefined, opts)
    let produced = 0
    const saves: Array<Promise<void>> = []
    for (let i = 0; i < 50; i++) {
      doc.setSelf(record(i), true)
      saves.push(file.save(() => { produced++; return doc.snapshot() }))
    }
    await Promise.all(saves)
    // one write running, the 49 others coalesced into one more
    expect(produced).toBe(2)
    const restored = new ClusterDoc('other', new Uint8Array(await readFile(file.path)), { verifier: recordVerifier() })
    expect(restored.records().map((r) => r.name)).toEqual(['host-49'])
    expect(await readdir(dir)).toEqual(['cluster.snapshot'])
  })
})

describe('openClusterDoc', () => {
  it('moves a truncated snapshot aside and starts cold', async () => {
    const doc = new ClusterDoc(PEER, undefined, opts)
    doc.setSelf(record(1), true)
    const bytes = doc.snapshot()
    const file = join(dir, 'cluster.snapshot')
    await writeFile(file, bytes.slice(0, Math.floor(bytes.length / 2)))
    const opened = await openClusterDoc(file, PEER, log, opts)
    expect(opened.records()).toEqual([])
    const names = await readdir(dir)
    expect(names.some((n) => /^cluster\.snapshot\.corrupt-\d+$/.test(n))).toBe(true)
    expect(names).not.toContain('cluster.snapshot')
  })

  it('opens a whole snapshot warm', async () => {
    const doc = new ClusterDoc(PEER, undefined, opts)
    doc.setSelf(record(7), true)
    const file = join(dir, 'cluster.snapshot')
    await writeFile(file, doc.snapshot())
    expect((await openClusterDoc(file, PEER, log, opts)).records().map((r) => r.name)).toEqual(['host-7'])
  })
})
