/**
 * A tiny llama-architecture model with random weights, encoded as a GGUF v3 file.
 *
 * It is what the tests and the demo load into a real `llama-server` (the fixtures cache it on disk:
 * `ensureTinyModel`) and what the catalogue's unit tests scan: a few hundred kilobytes,
 * generated in milliseconds, identical for a given seed, and needing no download. The text it
 * produces is noise, but it exercises the whole path: loading, tokenizing with a SentencePiece
 * style vocabulary, applying a ChatML chat template, decoding, and stopping at `<|im_end|>`.
 *
 * GGUF layout (all little-endian), as read by ggml's `gguf.cpp`:
 *
 *   header        magic "GGUF", version u32 = 3, tensor count u64, metadata count u64
 *   metadata      key (string), value type (u32), value
 *   tensor infos  name (string), n_dims (u32), dims (u64 each, ne0 first), type (u32), offset (u64)
 *   padding       zeros up to a multiple of `general.alignment`
 *   tensor data   each tensor at its offset (relative to the start of this section),
 *                 every offset a multiple of the alignment
 *
 * A string is a u64 byte length followed by UTF-8 bytes (no terminator); an array is the
 * element type (u32), the element count (u64), then the elements.
 */
import { mulberry32 } from './random.js'

export interface TinyModelOptions {
  /** Seed of the weight generator; the same seed gives the same bytes. Default 42. */
  seed?: number
  /** Embedding width. Default 64. */
  nEmbd?: number
  /** Number of transformer blocks. Default 2. */
  nLayer?: number
  /** Attention heads; must divide nEmbd. Default 4. */
  nHead?: number
  /** Key/value heads (grouped-query attention); must divide nHead. Default 4. */
  nHeadKv?: number
  /** Feed-forward hidden width. Default 128. */
  nFf?: number
  /** Trained context length advertised in the metadata. Default 2048. */
  nCtx?: number
  /** `general.name`, and the stem of the cached file name. Default "tiny-llama". */
  name?: string
  /**
   * Experts per block; 0 is a dense model. Above 0 each block is a Mixtral-style mixture of
   * experts: a router `ffn_gate_inp` [nEmbd, nExpert] and the experts' `ffn_gate_exps`,
   * `ffn_up_exps` [nEmbd, nFf, nExpert] and `ffn_down_exps` [nFf, nEmbd, nExpert] (nFf is then
   * each expert's width) in place of the dense feed-forward tensors. Default 0.
   */
  nExpert?: number
  /** Experts each token is routed to; between 1 and nExpert. Default min(2, nExpert). */
  nExpertUsed?: number
}

// ---------------------------------------------------------------------------------------------
// GGUF constants
// ---------------------------------------------------------------------------------------------

const GGUF_MAGIC = 0x46554747 // "GGUF" read as a little-endian u32
const GGUF_VERSION = 3
const ALIGNMENT = 32

/** The value types of GGUF metadata (`enum gguf_type`). */
const enum GgufType {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
}

/** ggml tensor type F32 (`GGML_TYPE_F32`); also `general.file_type` 0 = LLAMA_FTYPE_ALL_F32. */
const GGML_TYPE_F32 = 0

/** SentencePiece token types as llama.cpp reads them from `tokenizer.ggml.token_type`. */
const enum TokenType {
  NORMAL = 1,
  UNKNOWN = 2,
  CONTROL = 3,
  BYTE = 6,
}

/** A metadata value, tagged with the GGUF type it is encoded as. */
type MetaValue =
  | { type: GgufType.UINT32, value: number }
  | { type: GgufType.INT32, value: number }
  | { type: GgufType.FLOAT32, value: number }
  | { type: GgufType.BOOL, value: boolean }
  | { type: GgufType.STRING, value: string }
  | { type: GgufType.ARRAY, itemType: GgufType.STRING, value: readonly string[] }
  | { type: GgufType.ARRAY, itemType: GgufType.FLOAT32 | GgufType.INT32, value: readonly number[] }

const u32 = (value: number): MetaValue => ({ type: GgufType.UINT32, value })
const f32 = (value: number): MetaValue => ({ type: GgufType.FLOAT32, value })
const bool = (value: boolean): MetaValue => ({ type: GgufType.BOOL, value })
const str = (value: string): MetaValue => ({ type: GgufType.STRING, value })
const strArray = (value: readonly string[]): MetaValue => ({ type: GgufType.ARRAY, itemType: GgufType.STRING, value })
const f32Array = (value: readonly number[]): MetaValue => ({ type: GgufType.ARRAY, itemType: GgufType.FLOAT32, value })
const i32Array = (value: readonly number[]): MetaValue => ({ type: GgufType.ARRAY, itemType: GgufType.INT32, value })

// ---------------------------------------------------------------------------------------------
// Binary writer
// ---------------------------------------------------------------------------------------------

const utf8 = new TextEncoder()
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1

/** An append-only little-endian byte buffer that grows as needed. */
class BinaryWriter {
  private bytes: Uint8Array
  private view: DataView
  private length = 0

  /** `capacity`: the expected size, so that a large file is not copied as the buffer grows. */
  constructor (capacity = 64 * 1024) {
    this.bytes = new Uint8Array(capacity)
    this.view = new DataView(this.bytes.buffer)
  }

  /** Number of bytes written so far. */
  get offset (): number {
    return this.length
  }

  /**
   * Makes room for `n` more bytes and returns the position they start at. It may replace
   * `bytes` and `view`, so callers read those only after calling it.
   */
  private reserve (n: number): number {
    const at = this.length
    if (at + n > this.bytes.length) {
      let capacity = this.bytes.length * 2
      while (capacity < at + n) capacity *= 2
      const grown = new Uint8Array(capacity)
      grown.set(this.bytes.subarray(0, at))
      this.bytes = grown
      this.view = new DataView(grown.buffer)
    }
    this.length += n
    return at
  }

  u8 (v: number): void {
    const at = this.reserve(1)
    this.view.setUint8(at, v)
  }

  u32 (v: number): void {
    const at = this.reserve(4)
    this.view.setUint32(at, v, true)
  }

  i32 (v: number): void {
    const at = this.reserve(4)
    this.view.setInt32(at, v, true)
  }

  u64 (v: number | bigint): void {
    const at = this.reserve(8)
    this.view.setBigUint64(at, BigInt(v), true)
  }

  f32 (v: number): void {
    const at = this.reserve(4)
    this.view.setFloat32(at, v, true)
  }

  bool (v: boolean): void {
    this.u8(v ? 1 : 0)
  }

  /**
   * `count` f32 values from `next`, written through a Float32Array view (far faster than one
   * DataView call each on models of hundreds of megabytes). Little-endian hosts only, as are
   * those llama.cpp runs on; a big-endian one gets an Error rather than a corrupt file.
   */
  f32s (count: number, next: () => number): void {
    if (!LITTLE_ENDIAN) throw new Error('tiny model: writing tensors needs a little-endian host')
    const at = this.reserve(count * 4)
    if (at % 4 !== 0) throw new Error(`tiny model: f32 run at unaligned offset ${at}`)
    const out = new Float32Array(this.bytes.buffer, at, count)
    for (let k = 0; k < count; k++) out[k] = next()
  }

  raw (data: Uint8Array): void {
    const at = this.reserve(data.length)
    this.bytes.set(data, at)
  }

  /** A GGUF string: u64 byte length, then the UTF-8 bytes. */
  string (s: string): void {
    const encoded = utf8.encode(s)
    this.u64(encoded.length)
    this.raw(encoded)
  }

  /** Zero bytes up to the next multiple of `alignment` (the buffer starts zeroed). */
  pad (alignment: number): void {
    const rest = this.length % alignment
    if (rest !== 0) this.reserve(alignment - rest)
  }

  /** One metadata value, preceded by its type tag. */
  value (v: MetaValue): void {
    this.u32(v.type)
    switch (v.type) {
      case GgufType.UINT32: this.u32(v.value); break
      case GgufType.INT32: this.i32(v.value); break
      case GgufType.FLOAT32: this.f32(v.value); break
      case GgufType.BOOL: this.bool(v.value); break
      case GgufType.STRING: this.string(v.value); break
      case GgufType.ARRAY:
        this.u32(v.itemType)
        this.u64(v.value.length)
        if (v.itemType === GgufType.STRING) {
          for (const item of v.value) this.string(item)
        } else if (v.itemType === GgufType.FLOAT32) {
          for (const item of v.value) this.f32(item)
        } else {
          for (const item of v.value) this.i32(item)
        }
        break
    }
  }

  /** A copy of the written bytes. */
  finish (): Uint8Array {
    return this.bytes.slice(0, this.length)
  }
}

// ---------------------------------------------------------------------------------------------
// Deterministic weights
// ---------------------------------------------------------------------------------------------


/** Half-width of the uniform distribution of the random weights: small enough to stay finite. */
const WEIGHT_SCALE = 0.08

// ---------------------------------------------------------------------------------------------
// Vocabulary: SentencePiece ("llama") style
// ---------------------------------------------------------------------------------------------

interface Vocab {
  tokens: string[]
  scores: number[]
  types: number[]
}

const SPACE = '\u2581' // "▁", SentencePiece's word-boundary marker

/** Common words, each becoming a word-initial piece "▁word" (with all its prefixes). */
const COMMON_WORDS = [
  'the', 'a', 'to', 'of', 'and', 'in', 'is', 'it', 'you', 'that', 'for', 'on', 'with', 'as',
  'I', 'be', 'at', 'this', 'hi', 'hello', 'how', 'are', 'what', 'do',
]
/** Common letter pairs inside words. */
const COMMON_PAIRS = ['th', 'he', 'in', 'er', 'an', 're', 'on', 'at', 'en', 'nd', 'ou', 'is', 'll', 'el', 'lo']

function buildVocab (): Vocab {
  const tokens: string[] = []
  const scores: number[] = []
  const types: number[] = []
  const add = (token: string, score: number, type: TokenType): void => {
    tokens.push(token)
    scores.push(score)
    types.push(type)
  }

  // Ids 0..2 are fixed by the metadata below: unknown, bos, eos.
  add('<unk>', 0, TokenType.UNKNOWN)
  add('<s>', 0, TokenType.CONTROL)
  add('</s>', 0, TokenType.CONTROL)
  // Byte-fallback tokens: any text the pieces cannot cover is spelled byte by byte.
  for (let b = 0; b < 256; b++) {
    add(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`, 0, TokenType.BYTE)
  }
  // ChatML markers used by the chat template; `<|im_end|>` is recognised as end of generation.
  add('<|im_start|>', 0, TokenType.CONTROL)
  add('<|im_end|>', 0, TokenType.CONTROL)

  // Normal pieces with strictly descending scores. llama.cpp's SPM tokenizer starts from single
  // characters and repeatedly merges the adjacent pair whose concatenation is the best-scored
  // piece, so a piece is reachable only through pieces that are themselves in the vocabulary.
  // Hence every word comes with all its prefixes ("▁t", "▁th", "▁the"), and word-initial pieces
  // outrank the in-word pairs, so "▁the" is not pre-empted by "th" + "e".
  const letters = Array.from({ length: 26 }, (_, i) => String.fromCharCode(97 + i))
  const wordPrefixes = COMMON_WORDS.flatMap((word) =>
    Array.from({ length: word.length }, (_, i) => SPACE + word.slice(0, i + 1)))
  const pieces = [
    SPACE,
    ...wordPrefixes,
    ...letters.map((l) => SPACE + l),
    ...COMMON_PAIRS,
    ...letters,
  ]
  const seen = new Set<string>()
  let score = -1
  for (const piece of pieces) {
    if (seen.has(piece)) continue // e.g. "▁t" is a prefix of "▁the" and of "▁to"
    seen.add(piece)
    add(piece, score, TokenType.NORMAL)
    score -= 1
  }
  return { tokens, scores, types }
}

const CHATML_TEMPLATE =
  "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"

// ---------------------------------------------------------------------------------------------
// Encoder
// ---------------------------------------------------------------------------------------------

interface TensorSpec {
  name: string
  /** ggml order: ne0 (the contiguous dimension) first. */
  dims: number[]
  /** Norm weights are all ones; the rest are random. */
  ones: boolean
}

/** The options with every default filled in. */
export interface ResolvedTinyModelOptions {
  seed: number
  nEmbd: number
  nLayer: number
  nHead: number
  nHeadKv: number
  nFf: number
  nCtx: number
  name: string
  nExpert: number
  nExpertUsed: number
}

const DEFAULTS: ResolvedTinyModelOptions = {
  seed: 42,
  nEmbd: 64,
  nLayer: 2,
  nHead: 4,
  nHeadKv: 4,
  nFf: 128,
  nCtx: 2048,
  name: 'tiny-llama',
  nExpert: 0,
  nExpertUsed: 0,
}

/** llama.cpp's LLAMA_MAX_EXPERTS: a model with more experts per block fails to load. */
const MAX_EXPERTS = 1024

/** Fills in the defaults and checks the shape (RangeError on a bad option). */
export function resolveTinyModelOptions (opts: TinyModelOptions): ResolvedTinyModelOptions {
  const o: ResolvedTinyModelOptions = {
    seed: opts.seed ?? DEFAULTS.seed,
    nEmbd: opts.nEmbd ?? DEFAULTS.nEmbd,
    nLayer: opts.nLayer ?? DEFAULTS.nLayer,
    nHead: opts.nHead ?? DEFAULTS.nHead,
    nHeadKv: opts.nHeadKv ?? DEFAULTS.nHeadKv,
    nFf: opts.nFf ?? DEFAULTS.nFf,
    nCtx: opts.nCtx ?? DEFAULTS.nCtx,
    name: opts.name ?? DEFAULTS.name,
    nExpert: opts.nExpert ?? DEFAULTS.nExpert,
    nExpertUsed: opts.nExpertUsed ?? Math.min(2, opts.nExpert ?? DEFAULTS.nExpert),
  }
  if (!Number.isInteger(o.seed)) throw new RangeError(`tiny model: seed must be an integer, got ${o.seed}`)
  for (const key of ['nEmbd', 'nLayer', 'nHead', 'nHeadKv', 'nFf', 'nCtx'] as const) {
    if (!Number.isInteger(o[key]) || o[key] < 1) {
      throw new RangeError(`tiny model: ${key} must be a positive integer, got ${o[key]}`)
    }
  }
  if (!Number.isInteger(o.nExpert) || o.nExpert < 0 || o.nExpert > MAX_EXPERTS) {
    throw new RangeError(`tiny model: nExpert must be an integer from 0 to ${MAX_EXPERTS}, got ${o.nExpert}`)
  }
  if (o.nExpert === 0 ? o.nExpertUsed !== 0 : !Number.isInteger(o.nExpertUsed) || o.nExpertUsed < 1 || o.nExpertUsed > o.nExpert) {
    throw new RangeError(`tiny model: nExpertUsed must be an integer from 1 to nExpert (${o.nExpert}), or absent for a dense model, got ${o.nExpertUsed}`)
  }
  if (o.nEmbd % o.nHead !== 0) throw new RangeError(`tiny model: nHead (${o.nHead}) must divide nEmbd (${o.nEmbd})`)
  if (o.nHead % o.nHeadKv !== 0) throw new RangeError(`tiny model: nHeadKv (${o.nHeadKv}) must divide nHead (${o.nHead})`)
  if (!/^[\w.-]+$/.test(o.name)) throw new RangeError(`tiny model: name must be a plain file stem, got ${JSON.stringify(o.name)}`)
  return o
}

/** One tensor of a tiny model as the file describes it. */
export interface TinyModelTensor {
  name: string
  /** ggml order: ne0 (the contiguous dimension) first. */
  dims: number[]
  /** Data bytes (F32), before alignment padding. */
  bytes: number
}

/**
 * The tensors `writeTinyLlamaGguf` writes for these options, without writing them: what a
 * planner's test needs to know of the model (bytes per block, per expert) at no cost.
 */
export function tinyModelTensors (opts: TinyModelOptions = {}): TinyModelTensor[] {
  const o = resolveTinyModelOptions(opts)
  return tensorSpecs(o, buildVocab().tokens.length).map(({ name, dims }) => ({
    name,
    dims: [...dims],
    bytes: dims.reduce((a, b) => a * b, 1) * 4,
  }))
}

/**
 * A mixture-of-experts model as small as the default dense one: 4 blocks of 4 experts, 2 used
 * per token (about 2 MB). Its own name, so that `ensureTinyModel` caches it apart.
 */
export const TINY_MOE_MODEL: Readonly<TinyModelOptions> = Object.freeze({
  name: 'tiny-moe',
  nLayer: 4,
  nExpert: 4,
  nExpertUsed: 2,
})

/**
 * A model for splitting over llama.cpp RPC, shaped so that every block matrix (attention and
 * feed-forward, 1664 x 1664 F32 = 10.56 MiB) is above the 10 MiB from which an `rpc-server -c`
 * takes a tensor from its local cache instead of the network (HASH_THRESHOLD in ggml-rpc.cpp);
 * key/value heads equal the heads for the same reason. 4 blocks of 74 MiB, 315 MB in all, written
 * in about 7 s. What still crosses the network on every load is the norms and, on the member that
 * holds the last block, `output.weight` (vocabulary x 1664 F32, 2.5 MB): measured 3.05 MB sent on
 * a second load of two blocks against 158 MB on the first, 0.60 MB with `-ot ^output\.weight=CPU`.
 * F32 rather than F16: the same bytes per tensor at half the arithmetic per token on a CPU.
 */
export const TINY_SPLIT_MODEL: Readonly<TinyModelOptions> = Object.freeze({
  name: 'tiny-split',
  nLayer: 4,
  nEmbd: 1664,
  nHead: 16,
  nHeadKv: 16,
  nFf: 1664,
})

function tensorSpecs (o: ResolvedTinyModelOptions, nVocab: number): TensorSpec[] {
  const headDim = o.nEmbd / o.nHead
  const nEmbdKv = o.nHeadKv * headDim
  const specs: TensorSpec[] = [
    { name: 'token_embd.weight', dims: [o.nEmbd, nVocab], ones: false },
  ]
  for (let i = 0; i < o.nLayer; i++) {
    const blk = `blk.${i}.`
    specs.push(
      { name: `${blk}attn_norm.weight`, dims: [o.nEmbd], ones: true },
      { name: `${blk}attn_q.weight`, dims: [o.nEmbd, o.nEmbd], ones: false },
      { name: `${blk}attn_k.weight`, dims: [o.nEmbd, nEmbdKv], ones: false },
      { name: `${blk}attn_v.weight`, dims: [o.nEmbd, nEmbdKv], ones: false },
      { name: `${blk}attn_output.weight`, dims: [o.nEmbd, o.nEmbd], ones: false },
      { name: `${blk}ffn_norm.weight`, dims: [o.nEmbd], ones: true },
    )
    if (o.nExpert === 0) {
      specs.push(
        { name: `${blk}ffn_gate.weight`, dims: [o.nEmbd, o.nFf], ones: false },
        { name: `${blk}ffn_up.weight`, dims: [o.nEmbd, o.nFf], ones: false },
        { name: `${blk}ffn_down.weight`, dims: [o.nFf, o.nEmbd], ones: false },
      )
    } else {
      // Mixtral's layout (llama.cpp src/models/llama.cpp): the expert index is the outermost dimension.
      specs.push(
        { name: `${blk}ffn_gate_inp.weight`, dims: [o.nEmbd, o.nExpert], ones: false },
        { name: `${blk}ffn_gate_exps.weight`, dims: [o.nEmbd, o.nFf, o.nExpert], ones: false },
        { name: `${blk}ffn_up_exps.weight`, dims: [o.nEmbd, o.nFf, o.nExpert], ones: false },
        { name: `${blk}ffn_down_exps.weight`, dims: [o.nFf, o.nEmbd, o.nExpert], ones: false },
      )
    }
  }
  specs.push(
    { name: 'output_norm.weight', dims: [o.nEmbd], ones: true },
    { name: 'output.weight', dims: [o.nEmbd, nVocab], ones: false },
  )
  return specs
}

/** Header bytes reserved up front besides the tensor infos: the vocabulary takes about 8 KiB. */
const HEADER_ALLOWANCE_BYTES = 64 * 1024

const alignUp = (n: number, alignment: number): number => Math.ceil(n / alignment) * alignment

/** Encodes a complete GGUF v3 file in memory. Deterministic for a given seed. */
export function writeTinyLlamaGguf (opts: TinyModelOptions = {}): Uint8Array {
  const o = resolveTinyModelOptions(opts)
  const vocab = buildVocab()
  const nVocab = vocab.tokens.length

  const metadata: Array<[string, MetaValue]> = [
    ['general.architecture', str('llama')],
    ['general.name', str(o.name)],
    ['general.file_type', u32(0)], // LLAMA_FTYPE_ALL_F32
    ['general.alignment', u32(ALIGNMENT)],
    ['llama.vocab_size', u32(nVocab)],
    ['llama.context_length', u32(o.nCtx)],
    ['llama.embedding_length', u32(o.nEmbd)],
    ['llama.block_count', u32(o.nLayer)],
    ['llama.feed_forward_length', u32(o.nFf)],
    ['llama.attention.head_count', u32(o.nHead)],
    ['llama.attention.head_count_kv', u32(o.nHeadKv)],
    ['llama.rope.dimension_count', u32(o.nEmbd / o.nHead)],
    ['llama.attention.layer_norm_rms_epsilon', f32(1e-5)],
    ['llama.rope.freq_base', f32(10000)],
    ...(o.nExpert === 0
      ? []
      : [['llama.expert_count', u32(o.nExpert)], ['llama.expert_used_count', u32(o.nExpertUsed)]] satisfies Array<[string, MetaValue]>),
    ['tokenizer.ggml.model', str('llama')],
    ['tokenizer.ggml.tokens', strArray(vocab.tokens)],
    ['tokenizer.ggml.scores', f32Array(vocab.scores)],
    ['tokenizer.ggml.token_type', i32Array(vocab.types)],
    ['tokenizer.ggml.unknown_token_id', u32(0)],
    ['tokenizer.ggml.bos_token_id', u32(1)],
    ['tokenizer.ggml.eos_token_id', u32(2)],
    ['tokenizer.ggml.add_bos_token', bool(true)],
    ['tokenizer.ggml.add_eos_token', bool(false)],
    ['tokenizer.chat_template', str(CHATML_TEMPLATE)],
  ]

  // Lay the tensors out one after the other, each starting on an aligned offset.
  const specs = tensorSpecs(o, nVocab)
  const offsets: number[] = []
  let dataSize = 0
  for (const spec of specs) {
    offsets.push(dataSize)
    const elements = spec.dims.reduce((a, b) => a * b, 1)
    dataSize = alignUp(dataSize + elements * 4, ALIGNMENT)
  }

  // Room for the data plus a generous allowance for the header (vocabulary, tensor infos).
  const w = new BinaryWriter(dataSize + HEADER_ALLOWANCE_BYTES + specs.length * 128)

  // Header.
  w.u32(GGUF_MAGIC)
  w.u32(GGUF_VERSION)
  w.u64(specs.length)
  w.u64(metadata.length)

  // Metadata key/value pairs.
  for (const [key, value] of metadata) {
    w.string(key)
    w.value(value)
  }

  // Tensor infos.
  specs.forEach((spec, i) => {
    w.string(spec.name)
    w.u32(spec.dims.length)
    for (const d of spec.dims) w.u64(d)
    w.u32(GGML_TYPE_F32)
    w.u64(offsets[i] ?? 0)
  })

  // Tensor data: starts aligned; every tensor at its precomputed offset.
  w.pad(ALIGNMENT)
  const dataStart = w.offset
  const random = mulberry32(o.seed)
  specs.forEach((spec, i) => {
    const expected = dataStart + (offsets[i] ?? 0)
    if (w.offset !== expected) throw new Error(`tiny model: ${spec.name} at ${w.offset}, expected ${expected}`)
    const elements = spec.dims.reduce((a, b) => a * b, 1)
    w.f32s(elements, spec.ones ? () => 1 : () => (random() * 2 - 1) * WEIGHT_SCALE)
    w.pad(ALIGNMENT)
  })

  return w.finish()
}
