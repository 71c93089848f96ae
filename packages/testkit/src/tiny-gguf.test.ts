import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { gguf } from '@huggingface/gguf'
import { resolveTinyModelOptions, tinyModelTensors, TINY_MOE_MODEL, TINY_SPLIT_MODEL, writeTinyLlamaGguf } from './tiny-gguf.js'

const scratch = await mkdtemp(join(tmpdir(), 'llmesh-tiny-gguf-'))
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true })
})

/** Writes `bytes` to a scratch file and parses it with @huggingface/gguf (a third-party reader). */
async function parse (bytes: Uint8Array, file: string) {
  const path = join(scratch, file)
  await writeFile(path, bytes)
  const parsed = await gguf(path, { allowLocalFile: true })
  const metadata = parsed.metadata as Record<string, unknown>
  const shapes = new Map(parsed.tensorInfos.map((t) => [t.name, t.shape.map(Number)]))
  return { ...parsed, metadata, shapes }
}

/** Bytes of the tensor data section: each F32 tensor rounded up to the 32-byte alignment. */
function dataBytes (tensorInfos: ReadonlyArray<{ shape: readonly bigint[] }>): bigint {
  return tensorInfos.reduce((sum, t) => sum + (t.shape.reduce((a, b) => a * b, 1n) * 4n + 31n) / 32n * 32n, 0n)
}

describe('writeTinyLlamaGguf: mixture of experts', () => {
  it('writes Mixtral-style expert tensors and the expert counts', async () => {
    const bytes = writeTinyLlamaGguf({ seed: 3, nLayer: 2, nEmbd: 32, nHead: 4, nFf: 48, nExpert: 4, nExpertUsed: 2 })
    const { metadata, tensorInfos, tensorDataOffset, shapes } = await parse(bytes, 'moe.gguf')
    expect(metadata['general.architecture']).toBe('llama')
    expect(metadata['llama.expert_count']).toBe(4)
    expect(metadata['llama.expert_used_count']).toBe(2)
    expect(metadata['llama.feed_forward_length']).toBe(48)
    const nVocab = (metadata['tokenizer.ggml.tokens'] as string[]).length

    // token_embd, output_norm, output + per block: 2 norms, 4 attention, router, 3 expert tensors.
    expect(tensorInfos).toHaveLength(3 + 2 * 10)
    for (const b of [0, 1]) {
      expect(shapes.get(`blk.${b}.ffn_gate_inp.weight`)).toEqual([32, 4])
      expect(shapes.get(`blk.${b}.ffn_gate_exps.weight`)).toEqual([32, 48, 4])
      expect(shapes.get(`blk.${b}.ffn_up_exps.weight`)).toEqual([32, 48, 4])
      expect(shapes.get(`blk.${b}.ffn_down_exps.weight`)).toEqual([48, 32, 4])
      expect(shapes.get(`blk.${b}.attn_q.weight`)).toEqual([32, 32])
      // The dense feed-forward tensors are replaced, not kept alongside.
      expect(shapes.has(`blk.${b}.ffn_gate.weight`)).toBe(false)
      expect(shapes.has(`blk.${b}.ffn_up.weight`)).toBe(false)
      expect(shapes.has(`blk.${b}.ffn_down.weight`)).toBe(false)
    }
    expect(shapes.get('output.weight')).toEqual([32, nVocab])
    expect(BigInt(bytes.length)).toBe(tensorDataOffset + dataBytes(tensorInfos))
  })

  it('routes each token to two experts unless told otherwise', () => {
    expect(resolveTinyModelOptions({ nExpert: 8 })).toMatchObject({ nExpert: 8, nExpertUsed: 2 })
    expect(resolveTinyModelOptions({ nExpert: 1 })).toMatchObject({ nExpert: 1, nExpertUsed: 1 })
    expect(resolveTinyModelOptions({})).toMatchObject({ nExpert: 0, nExpertUsed: 0 })
  })

  it('writes no expert keys for a dense model', async () => {
    const { metadata, shapes } = await parse(writeTinyLlamaGguf({ seed: 3, nLayer: 1 }), 'dense.gguf')
    expect(metadata).not.toHaveProperty('llama.expert_count')
    expect(metadata).not.toHaveProperty('llama.expert_used_count')
    expect(shapes.get('blk.0.ffn_up.weight')).toEqual([64, 128])
    expect(shapes.has('blk.0.ffn_gate_inp.weight')).toBe(false)
  })

  it('rejects expert counts llama.cpp could not load', () => {
    expect(() => writeTinyLlamaGguf({ nExpert: 4, nExpertUsed: 5 })).toThrow(RangeError)
    expect(() => writeTinyLlamaGguf({ nExpert: 4, nExpertUsed: 0 })).toThrow(RangeError)
    expect(() => writeTinyLlamaGguf({ nExpertUsed: 1 })).toThrow(/nExpertUsed/)
    expect(() => writeTinyLlamaGguf({ nExpert: -1 })).toThrow(RangeError)
    expect(() => writeTinyLlamaGguf({ nExpert: 1.5 })).toThrow(RangeError)
    expect(() => writeTinyLlamaGguf({ nExpert: 1025 })).toThrow(/nExpert/)
  })
})

describe('writeTinyLlamaGguf: larger shapes', () => {
  it('lays out megabyte tensors at aligned offsets, as tinyModelTensors describes them', async () => {
    const opts = { seed: 9, nLayer: 1, nEmbd: 512, nHead: 8, nHeadKv: 8, nFf: 1024 }
    const bytes = writeTinyLlamaGguf(opts)
    const { tensorInfos, tensorDataOffset } = await parse(bytes, 'larger.gguf')
    const described = tinyModelTensors(opts)
    expect(tensorInfos.map((t) => t.name)).toEqual(described.map((t) => t.name))
    for (const [i, t] of tensorInfos.entries()) {
      expect(t.shape.map(Number)).toEqual(described[i]!.dims)
      expect(t.offset % 32n).toBe(0n)
    }
    expect(described.find((t) => t.name === 'blk.0.ffn_up.weight')!.bytes).toBe(512 * 1024 * 4)
    expect(BigInt(bytes.length)).toBe(tensorDataOffset + dataBytes(tensorInfos))

    // Weights are small and non-zero; norms are ones.
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    const at = (name: string, i: number): number => {
      const info = tensorInfos.find((t) => t.name === name)!
      return view.getFloat32(Number(tensorDataOffset + info.offset) + i * 4, true)
    }
    expect(at('blk.0.attn_norm.weight', 511)).toBe(1)
    const last = at('blk.0.ffn_down.weight', 512 * 1024 - 1)
    expect(Math.abs(last)).toBeLessThanOrEqual(0.08)
    expect(last).not.toBe(0)
  })
})

describe('test model presets', () => {
  it('TINY_SPLIT_MODEL: every block matrix is above the rpc-server cache threshold of 10 MiB', () => {
    const tensors = tinyModelTensors(TINY_SPLIT_MODEL)
    const matrices = tensors.filter((t) => t.name.startsWith('blk.') && t.dims.length === 2)
    expect(matrices).toHaveLength(4 * 7)
    for (const t of matrices) expect(t.bytes).toBeGreaterThan(10 * 1024 * 1024)
    // What stays below it and crosses the network on every load: norms, a small fraction.
    const total = tensors.reduce((a, t) => a + t.bytes, 0)
    const small = tensors.filter((t) => t.name.startsWith('blk.') && t.bytes <= 10 * 1024 * 1024)
    expect(small.reduce((a, t) => a + t.bytes, 0) / total).toBeLessThan(0.001)
    expect(total).toBeLessThan(320 * 1000 * 1000)
  })

  it('TINY_MOE_MODEL: a small mixture of experts under its own name', () => {
    const tensors = tinyModelTensors(TINY_MOE_MODEL)
    expect(resolveTinyModelOptions(TINY_MOE_MODEL)).toMatchObject({ name: 'tiny-moe', nExpert: 4, nExpertUsed: 2 })
    expect(tensors.filter((t) => t.name.endsWith('_exps.weight'))).toHaveLength(4 * 3)
    expect(tensors.reduce((a, t) => a + t.bytes, 0)).toBeLessThan(4 * 1024 * 1024)
  })
})
