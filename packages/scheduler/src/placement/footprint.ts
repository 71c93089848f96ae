import type { ModelInfo } from '@llmesh/protocol'
import { KV_ELEMENT_BYTES, KV_SHARE_OF_WEIGHTS_PER_TOKEN, RUNNER_OVERHEAD_BYTES } from '../constants.js'

/** What a model takes on a host, bytes, in parts (for the messages that explain a plan). */
export interface Footprint {
  weightsBytes: number
  kvBytes: number
  overheadBytes: number
  /** weights + KV cache + overhead */
  totalBytes: number
  /** how the KV cache was sized: the model's own figure, its shape, or a share of the weights */
  kv: 'model' | 'shape' | 'share'
}

/**
 * Memory `model` takes when run with a context of `ctxSize` tokens: its weights (the file's
 * size), its KV cache and RUNNER_OVERHEAD_BYTES of compute buffers.
 *
 * The KV cache, best source first:
 * - `kvBytesPerToken` × ctxSize, read from the GGUF header: exact for an f16 cache;
 * - from the shape, 2 (K and V) × layers × embedding width × KV_ELEMENT_BYTES per token: an
 *   upper bound, since models with grouped-query attention keep fewer KV heads than query
 *   heads (often a quarter or an eighth); erring high keeps a host from swapping;
 * - else KV_SHARE_OF_WEIGHTS_PER_TOKEN of the weights per token: a guess.
 * Not counted: a quantized KV cache (smaller), mmap'd weights the OS may page out, and a
 * multimodal projector file. A model whose footprint equals the free memory fits.
 */
export function footprint (model: ModelInfo, ctxSize: number): Footprint {
  const weightsBytes = nonNegative(model.sizeBytes)
  const ctx = nonNegative(ctxSize)
  let kvBytes: number
  let kv: Footprint['kv']
  if (model.kvBytesPerToken != null && model.kvBytesPerToken > 0) {
    kvBytes = model.kvBytesPerToken * ctx
    kv = 'model'
  } else if (model.layers != null && model.layers > 0 && model.embeddingLength != null && model.embeddingLength > 0) {
    kvBytes = 2 * model.layers * model.embeddingLength * KV_ELEMENT_BYTES * ctx
    kv = 'shape'
  } else {
    kvBytes = Math.ceil(weightsBytes * KV_SHARE_OF_WEIGHTS_PER_TOKEN * ctx)
    kv = 'share'
  }
  const overheadBytes = RUNNER_OVERHEAD_BYTES
  return { weightsBytes, kvBytes, overheadBytes, totalBytes: weightsBytes + kvBytes + overheadBytes, kv }
}

/** `footprint(model, ctxSize).totalBytes`: the memory `model` takes with a context of `ctxSize` tokens. */
export function footprintBytes (model: ModelInfo, ctxSize: number): number {
  return footprint(model, ctxSize).totalBytes
}

/** bytes as GiB with two decimals, the unit of placement messages */
export function gib (bytes: number): string {
  return (bytes / 1024 ** 3).toFixed(2)
}

function nonNegative (n: number): number {
  return Number.isFinite(n) && n > 0 ? n : 0
}
