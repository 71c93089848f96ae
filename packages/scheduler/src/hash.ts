/**
 * Stable, dependency-free hashing for prefix keys and rendezvous weights. Stable means: the
 * same bytes give the same value on every host, every platform and every llmesh version that
 * speaks this key format, because routers must agree without talking. Not cryptographic:
 * nothing here defends against a client that crafts collisions (it would only pick its own
 * host).
 */

const encoder = new TextEncoder()

/**
 * FNV-1a, 64 bit, over the UTF-8 bytes of `text`, as 16 lowercase hex digits. Computed in two
 * 32-bit halves (the 64-bit prime is 2^40 + 0x1b3), ten times faster than BigInt per byte.
 */
export function fnv1a64 (text: string): string {
  const bytes = encoder.encode(text)
  let hi = 0xcbf29ce4
  let lo = 0x84222325
  for (let i = 0; i < bytes.length; i++) {
    lo = (lo ^ bytes[i]!) >>> 0
    // (hi:lo) * 0x1b3, in 16-bit limbs with carries
    const t0 = (lo & 0xffff) * 0x1b3
    const t1 = (lo >>> 16) * 0x1b3 + (t0 >>> 16)
    let t2 = (hi & 0xffff) * 0x1b3 + (t1 >>> 16)
    let t3 = (hi >>> 16) * 0x1b3 + (t2 >>> 16)
    // + (hi:lo) << 40, which only touches the high word: hi += lo << 8
    const shifted = (lo << 8) >>> 0
    t2 = (t2 & 0xffff) + (shifted & 0xffff)
    t3 = (t3 & 0xffff) + (shifted >>> 16) + (t2 >>> 16)
    lo = (((t1 & 0xffff) << 16) | (t0 & 0xffff)) >>> 0
    hi = (((t3 & 0xffff) << 16) | (t2 & 0xffff)) >>> 0
  }
  return hi.toString(16).padStart(8, '0') + lo.toString(16).padStart(8, '0')
}

const MASK64 = (1n << 64n) - 1n

/** murmur3's 64-bit finaliser: every input bit flips each output bit with probability ~1/2. */
function fmix64 (k: bigint): bigint {
  k ^= k >> 33n
  k = (k * 0xff51afd7ed558ccdn) & MASK64
  k ^= k >> 33n
  k = (k * 0xc4ceb9fe1a85ec53n) & MASK64
  k ^= k >> 33n
  return k
}

/**
 * A number uniform in the open interval (0, 1) derived from `text`: FNV-1a then a finaliser
 * (plain FNV of strings that differ only at the end, like `key + peerId`, is poorly mixed in
 * its high bits), top 53 bits, shifted by half a step so it is never 0 or 1.
 */
export function unitHash (text: string): number {
  const h = fmix64(BigInt(`0x${fnv1a64(text)}`))
  return (Number(h >> 11n) + 0.5) / 2 ** 53
}
