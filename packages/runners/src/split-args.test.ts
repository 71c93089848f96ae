import { describe, expect, it } from 'vitest'
import { splitArgs } from './llama-server.js'

describe('splitArgs', () => {
  it('offloads the members\' blocks, the last share carrying the output unit that -ot keeps on the CPU', () => {
    // a model of 8 blocks, 2 on the coordinator and 3 on each of two rpc-servers (as read from llama-server's log)
    expect(splitArgs([3, 3])).toEqual(['-ngl', '7', '--tensor-split', '3,4', '-ot', '^output\\.weight=CPU', '-fit', 'off'])
    expect(splitArgs([2])).toEqual(['-ngl', '3', '--tensor-split', '3', '-ot', '^output\\.weight=CPU', '-fit', 'off'])
  })

  it('keeps the head on the coordinator, not every attention output', () => {
    const ot = splitArgs([1])[5]!
    const [pattern] = ot.split('=')
    const re = new RegExp(pattern!)
    expect(re.test('output.weight')).toBe(true)
    expect(re.test('blk.0.attn_output.weight')).toBe(false)
  })
})
