import { describe, expect, it } from 'vitest'
import * as varint from 'uint8-varint'
import { Uint8ArrayList } from 'uint8arraylist'
import { lpStream, streamPair } from '@libp2p/utils'
import { PAUSE_ABOVE_BYTES, framed, lengthPrefixed, varintPrefix } from './wire.js'

/** The bytes split into one-byte buffers. */
const bytewise = (bytes: Uint8Array): Uint8ArrayList => new Uint8ArrayList(...[...bytes].map((b) => Uint8Array.of(b)))

describe('varintPrefix (length prefix decoder)', () => {
  it('reads what uint8-varint writes, from one buffer or byte by byte, with the prefix size', () => {
    for (const n of [0, 1, 127, 128, 300, 16_383, 16_384, 3 * 1024 * 1024, 2 ** 31, 2 ** 40]) {
      const bytes = varint.encode(n)
      expect(varintPrefix(bytes)).toEqual({ length: n, size: bytes.length })
      expect(varintPrefix(bytewise(bytes))).toEqual({ length: n, size: bytes.length })
    }
  })

  it('gives the size as sent for a prefix longer than it needed to be', () => {
    expect(varintPrefix(Uint8Array.of(0x85, 0x80, 0x00))).toEqual({ length: 5, size: 3 })
  })

  it('answers undefined while the prefix is incomplete, and a length nothing allows after 8 bytes', () => {
    for (const partial of [Uint8Array.of(0x80), Uint8Array.of(0xff, 0xff), new Uint8Array(0)]) {
      expect(varintPrefix(partial)).toBeUndefined()
      expect(varintPrefix(bytewise(partial))).toBeUndefined()
    }
    // endless continuation bytes: a length no maxDataLength allows, so framed() refuses it
    expect(varintPrefix(new Uint8Array(8).fill(0xff))?.length).toBe(Number.MAX_SAFE_INTEGER)
  })

  it('reads what lengthPrefixed writes', () => {
    for (const n of [0, 1, 127, 128, 300, 16_384, 70_000]) {
      const framedBytes = lengthPrefixed(new Uint8Array(n).fill(7))
      expect(varintPrefix(framedBytes)).toEqual({ length: n, size: varint.encodingLength(n) })
      expect(framedBytes.length).toBe(varint.encodingLength(n) + n)
      expect([...framedBytes.subarray(0, varint.encodingLength(n))]).toEqual([...varint.encode(n)])
    }
  })
})

describe('framed (length-prefixed messages on a libp2p stream)', () => {
  const message = (n: number, fill: number): Uint8Array => new Uint8Array(n).fill(fill)

  it('reads messages whole however the bytes arrive: several in one chunk, one split over many', async () => {
    const [a, b] = await streamPair()
    const reader = framed(b, { maxDataLength: 1024 * 1024 })
    const sizes = [0, 1, 127, 128, 5000, 300_000]
    const all = Buffer.concat(sizes.map((n, i) => lengthPrefixed(message(n, i))))
    // the first three in one send, the rest cut into 7-byte pieces, prefixes included
    const cut = lengthPrefixed(message(0, 0)).length + lengthPrefixed(message(1, 1)).length + lengthPrefixed(message(127, 2)).length
    a.send(all.subarray(0, cut))
    for (let at = cut; at < all.length; at += 7) a.send(all.subarray(at, Math.min(all.length, at + 7)))
    for (const [i, n] of sizes.entries()) {
      const got = await reader.read()
      expect(got.length).toBe(n)
      expect(got.every((x) => x === i)).toBe(true)
    }
    await a.close()
  })

  it('reads a message whose prefix is longer than it needed to be, and the next one after it', async () => {
    const [a, b] = await streamPair()
    const reader = framed(b, { maxDataLength: 100 })
    a.send(Buffer.concat([Uint8Array.of(0x85, 0x80, 0x00), message(5, 3), lengthPrefixed(message(2, 4))]))
    expect(await reader.read()).toEqual(message(5, 3))
    expect(await reader.read()).toEqual(message(2, 4))
  })

  it('writes each message with its prefix, readable by lpStream', async () => {
    const [a, b] = await streamPair()
    const lp = lpStream(b)
    const writer = framed(a, { maxDataLength: 1024 })
    await writer.write(message(200, 9))
    await writer.write(message(3, 1))
    expect((await lp.read()).subarray()).toEqual(message(200, 9))
    expect((await lp.read()).subarray()).toEqual(message(3, 1))
  })

  it('refuses a message over maxDataLength before it arrives, and a prefix of endless continuation bytes', async () => {
    const [a, b] = await streamPair()
    const reader = framed(b, { maxDataLength: 100 })
    a.send(varint.encode(101))
    await expect(reader.read()).rejects.toThrow(/101 > 100/)
    const [c, d] = await streamPair()
    c.send(new Uint8Array(9).fill(0xff))
    await expect(framed(d, { maxDataLength: 100 }).read()).rejects.toThrow(/> 100/)
  })

  it('pauses the stream while unread messages pile up, and resumes it as they are read', async () => {
    const [a, b] = await streamPair()
    const reader = framed(b, { maxDataLength: 1024 * 1024 })
    const writer = framed(a, { maxDataLength: 1024 * 1024 })
    const count = Math.ceil((PAUSE_ABOVE_BYTES * 2) / (64 * 1024))
    for (let i = 0; i < count; i++) await writer.write(new Uint8Array(64 * 1024).fill(i))
    await new Promise((resolve) => setTimeout(resolve, 50))
    expect(b.readStatus).toBe('paused')
    for (let i = 0; i < count; i++) expect((await reader.read()).subarray()[0]).toBe(i)
    expect(b.readStatus).toBe('readable')
  })

  it('reads a message larger than the pause mark whole, whether or not a read was waiting for it', async () => {
    const size = PAUSE_ABOVE_BYTES * 3
    for (const readFirst of [true, false]) {
      const [a, b] = await streamPair()
      const reader = framed(b, { maxDataLength: size })
      const pending = readFirst ? reader.read() : undefined
      await framed(a, { maxDataLength: size }).write(new Uint8Array(size).fill(5))
      await new Promise((resolve) => setTimeout(resolve, 50))
      const message = await (pending ?? reader.read())
      expect(message.byteLength).toBe(size)
      expect(message.subarray()[size - 1]).toBe(5)
    }
  })

  it('throws at the end of the stream, also inside a message', async () => {
    const [a, b] = await streamPair()
    const reader = framed(b, { maxDataLength: 100 })
    a.send(lengthPrefixed(message(5, 1)))
    a.send(lengthPrefixed(message(50, 2)).subarray(0, 20))
    await a.close()
    expect((await reader.read()).length).toBe(5)
    await expect(reader.read()).rejects.toThrow(/ended inside a message \(20 bytes/)
    const [c, d] = await streamPair()
    await c.close()
    await expect(framed(d, { maxDataLength: 100 }).read()).rejects.toThrow(/stream ended/)
  })

  it('gives up a read when its signal aborts', async () => {
    const [, b] = await streamPair()
    const ac = new AbortController()
    const read = framed(b, { maxDataLength: 100 }).read({ signal: ac.signal })
    ac.abort(new Error('caller left'))
    await expect(read).rejects.toThrow(/caller left|abort/)
  })
})
