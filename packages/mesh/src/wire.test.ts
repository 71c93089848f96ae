import { describe, expect, it } from 'vitest'
import * as varint from 'uint8-varint'
import { Uint8ArrayList } from 'uint8arraylist'
import { uint16Length, varintLength } from './wire.js'

/** The bytes split into one-byte buffers, as lpStream gathers a prefix. */
const bytewise = (bytes: Uint8Array): Uint8ArrayList => new Uint8ArrayList(...[...bytes].map((b) => Uint8Array.of(b)))

describe('varintLength (lpStream prefix decoder)', () => {
  it('reads what uint8-varint writes, from one buffer or byte by byte', () => {
    for (const n of [0, 1, 127, 128, 300, 16_383, 16_384, 3 * 1024 * 1024, 2 ** 31, 2 ** 40]) {
      const bytes = varint.encode(n)
      expect(varintLength(bytes)).toBe(n)
      expect(varintLength(bytewise(bytes))).toBe(n)
    }
  })

  it('asks for another byte with one shared RangeError, and gives up after 8 bytes', () => {
    const errors = new Set<unknown>()
    for (const partial of [Uint8Array.of(0x80), Uint8Array.of(0xff, 0xff), new Uint8Array(0)]) {
      try {
        varintLength(bytewise(partial))
        expect.unreachable()
      } catch (err) {
        expect(err).toBeInstanceOf(RangeError)
        errors.add(err)
      }
    }
    expect(errors.size).toBe(1)
    // endless continuation bytes: a length no maxDataLength allows, so lpStream refuses it
    expect(varintLength(new Uint8Array(8).fill(0xff))).toBe(Number.MAX_SAFE_INTEGER)
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
