import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { Uint8ArrayList } from 'uint8arraylist'
import { LengthPrefixedDecoder } from '@libp2p/utils'
import { YamuxStream } from '@chainsafe/libp2p-yamux/stream'
import { PATCHED_VERSIONS, installedVersion, isNoiseDecoder, packageDir, patchable, yamuxWindowUpdates, uint16Length, yamuxInternalsMissing, type PatchedLibrary } from './patches.js'

/** A file of an installed library's dist, read as text (the internals the patches rely on). */
function distSource (name: PatchedLibrary, file: string): string {
  return readFileSync(join(packageDir(name) ?? 'missing', 'dist', 'src', file), 'utf8')
}

// When one of these fails, a library under a patch changed: read its new source, check that the
// patch still does what its comment says (or drop it), then add the version to PATCHED_VERSIONS.
describe('library patches (patches.ts)', () => {
  it('covers the installed version of every patched library', () => {
    for (const name of Object.keys(PATCHED_VERSIONS) as PatchedLibrary[]) {
      expect(PATCHED_VERSIONS[name], name).toContain(installedVersion(name))
    }
  })

  it('leaves a patch out, with one clear warning, on a version it was not written for', () => {
    const warnings: Array<{ fields: object, msg: string }> = []
    const log = (fields: object, msg: string): void => { warnings.push({ fields, msg }) }
    expect(patchable('@chainsafe/libp2p-yamux', log, PATCHED_VERSIONS['@chainsafe/libp2p-yamux'][0])).toBe(true)
    expect(warnings).toEqual([])
    expect(patchable('@chainsafe/libp2p-yamux', log, '99.0.0')).toBe(false)
    expect(warnings).toEqual([{
      fields: { library: '@chainsafe/libp2p-yamux', version: '99.0.0', known: PATCHED_VERSIONS['@chainsafe/libp2p-yamux'] },
      msg: expect.stringMatching(/patch left out/)
    }])
  })

  it('finds yamux\'s stream internals: sendWindowUpdate, the established state, the receive window fields', () => {
    expect(yamuxInternalsMissing()).toEqual([])
    const src = distSource('@chainsafe/libp2p-yamux', 'stream.js')
    expect(src).toMatch(/sendWindowUpdate\(\) \{/)
    expect(src).toMatch(/this\.recvWindowCapacity\b/)
    expect(src).toMatch(/this\.recvWindow = /)
    expect(src).toMatch(/this\.state\b/)
  })

  it('patches yamux\'s stream class on the installed version, once', () => {
    // another test file in this worker may have patched it already (the unit lane shares modules)
    const proto = YamuxStream.prototype as unknown as { sendWindowUpdate: { name: string } }
    const muxer = {}
    expect(yamuxWindowUpdates(muxer)).toBe(muxer)
    const patched = proto.sendWindowUpdate
    expect(patched.name).toBe('patchedSendWindowUpdate')
    yamuxWindowUpdates(muxer)
    expect(proto.sendWindowUpdate).toBe(patched)
  })

  it('finds noise\'s decoder: a LengthPrefixedDecoder with a 2-byte length decoder on each encrypted stream', () => {
    const src = distSource('@chainsafe/libp2p-noise', 'utils.js')
    expect(src).toMatch(/this\.decoder = new LengthPrefixedDecoder\(\{\s*lengthDecoder: uint16BEDecode,[^}]*encodingLength: \(\) => 2/)
    expect(isNoiseDecoder(new LengthPrefixedDecoder({ lengthDecoder: uint16Length, encodingLength: () => 2 }))).toBe(true)
    expect(isNoiseDecoder(new LengthPrefixedDecoder())).toBe(false)
  })

  it('finds the TCP connection\'s socket and its sendData', () => {
    const src = distSource('@libp2p/tcp', 'socket-to-conn.js')
    expect(src).toMatch(/this\.socket = init\.socket/)
    expect(src).toMatch(/\n\s+sendData\(data\) \{/)
  })
})

describe('uint16Length (noise message prefix decoder)', () => {
  it('reads a 2-byte big-endian length from one buffer or across two', () => {
    expect(uint16Length(Uint8Array.of(0x12, 0x34, 9))).toBe(0x1234)
    expect(uint16Length(new Uint8ArrayList(Uint8Array.of(0xff), Uint8Array.of(0xfe, 1)))).toBe(0xfffe)
  })

  it('answers the largest length, never throwing, while fewer than 2 bytes are there', () => {
    expect(uint16Length(new Uint8ArrayList())).toBe(0xffff)
    expect(uint16Length(new Uint8ArrayList(Uint8Array.of(7)))).toBe(0xffff)
  })
})
