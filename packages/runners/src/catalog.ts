/**
 * Model catalog: what models this host has on disk. GGUF files in configured folders and
 * Ollama's model store (manifests -> blobs), each described from its GGUF header without
 * loading weights: architecture, parameters, layers, context, quantization, experts, bytes per
 * layer. What is published (ModelInfo) holds names, sizes and digests, never local paths.
 */
import { createHash } from 'node:crypto'
import { open, readdir, readFile, stat } from 'node:fs/promises'
import type { Dirent } from 'node:fs'
import { homedir } from 'node:os'
import { basename, join, relative, sep } from 'node:path'
import { gguf, GGMLFileQuantizationType, parseGgufShardFilename } from '@huggingface/gguf'
import type { ModelInfo } from '@llmesh/protocol'
import { DIGEST_PREFIX_BYTES } from './constants.js'

export interface LocalModel {
  info: ModelInfo
  /** stays on this host: never published. For split GGUFs, the first shard. */
  path: string
}

/** GGUF header facts: the optional fields of ModelInfo. */
export type GgufFacts = Pick<ModelInfo, 'architecture' | 'parameters' | 'layers' | 'contextLength' | 'embeddingLength' | 'quantization' | 'experts' | 'expertsUsed' | 'bytesPerLayer' | 'otherBytes' | 'kvBytesPerToken'>

/** Model name users address: the configured name, else the file name without `.gguf` (and shard suffix). */
export function modelNameFromPath (path: string): string {
  const file = basename(path)
  const shard = parseGgufShardFilename(file)
  return (shard != null ? basename(shard.prefix) : file).replace(/\.gguf$/i, '')
}

/** sha256 of the first MiB and the size, hex: cheap, and tells copies apart from other files. */
async function prefixDigest (path: string, size: number): Promise<string> {
  const fh = await open(path, 'r')
  try {
    const buf = Buffer.alloc(Math.min(DIGEST_PREFIX_BYTES, size))
    await fh.read(buf, 0, buf.length, 0)
    if (buf.subarray(0, 4).toString('latin1') !== 'GGUF') throw new Error(`${path} is not a GGUF file`)
    return createHash('sha256').update(buf).update(String(size)).digest('hex')
  } finally {
    await fh.close()
  }
}

function num (v: unknown): number | undefined {
  if (typeof v === 'number' && Number.isFinite(v)) return v
  if (typeof v === 'bigint') return Number(v)
  // per-layer arrays (e.g. head_count_kv of hybrid models): the largest entry bounds memory
  if (Array.isArray(v) && v.length > 0) {
    const ns = v.map(num).filter((n): n is number => n != null)
    return ns.length > 0 ? Math.max(...ns) : undefined
  }
  return undefined
}

/** Paths of all shards of a split GGUF (`x-00001-of-00003.gguf`), or just `path`. */
async function shardPaths (path: string): Promise<string[]> {
  const shard = parseGgufShardFilename(path)
  if (shard == null) return [path]
  const total = Number(shard.total)
  const width = shard.shard.length
  const out: string[] = []
  for (let i = 1; i <= total; i++) out.push(`${shard.prefix}-${String(i).padStart(width, '0')}-of-${shard.total}.gguf`)
  return out
}

/**
 * Reads a GGUF header (never the weights) and derives what a planner needs. Tensor sizes come
 * from the gaps between tensor offsets, so quantization types need no table: a block's bytes
 * are the sum of its `blk.N.*` tensors; everything else (embeddings, output head) is `otherBytes`.
 * KV cache per token assumes an f16 cache: layers * 2 (K and V) * kv_heads * head_dim * 2 bytes.
 */
export async function readGgufFacts (paths: string[]): Promise<GgufFacts> {
  const facts: GgufFacts = {}
  const layerBytes = new Map<number, number>()
  let otherBytes = 0
  let parameters = 0
  for (const [i, path] of paths.entries()) {
    const size = (await stat(path)).size
    const parsed = await gguf(path, { allowLocalFile: true, computeParametersCount: true })
    parameters += parsed.parameterCount
    const tensors = [...parsed.tensorInfos].sort((a, b) => (a.offset < b.offset ? -1 : a.offset > b.offset ? 1 : 0))
    const dataBytes = size - Number(parsed.tensorDataOffset)
    for (const [j, t] of tensors.entries()) {
      const end = j + 1 < tensors.length ? Number(tensors[j + 1]!.offset) : dataBytes
      const bytes = Math.max(0, end - Number(t.offset))
      const m = /^blk\.(\d+)\./.exec(t.name)
      if (m?.[1] != null) layerBytes.set(Number(m[1]), (layerBytes.get(Number(m[1])) ?? 0) + bytes)
      else otherBytes += bytes
    }
    if (i > 0) continue
    // key/values live in the first shard
    const md = parsed.metadata as unknown as Record<string, unknown>
    const arch = typeof md['general.architecture'] === 'string' ? md['general.architecture'] : undefined
    if (arch == null) continue
    facts.architecture = arch
    const key = (k: string): number | undefined => num(md[`${arch}.${k}`])
    facts.layers = key('block_count')
    facts.contextLength = key('context_length')
    facts.embeddingLength = key('embedding_length')
    facts.experts = key('expert_count')
    facts.expertsUsed = key('expert_used_count')
    const fileType = num(md['general.file_type'])
    if (fileType != null) facts.quantization = (GGMLFileQuantizationType as unknown as Record<number, string>)[fileType] ?? `type-${fileType}`
    const heads = key('attention.head_count')
    const kvHeads = key('attention.head_count_kv') ?? heads
    const embd = facts.embeddingLength
    const keyLen = key('attention.key_length') ?? (embd != null && heads != null && heads > 0 ? embd / heads : undefined)
    const valueLen = key('attention.value_length') ?? keyLen
    if (facts.layers != null && kvHeads != null && keyLen != null && valueLen != null) {
      facts.kvBytesPerToken = Math.round(facts.layers * kvHeads * (keyLen + valueLen) * 2)
    }
  }
  facts.parameters = parameters
  if (layerBytes.size > 0) facts.bytesPerLayer = Math.max(...layerBytes.values())
  facts.otherBytes = otherBytes
  for (const k of Object.keys(facts) as Array<keyof GgufFacts>) if (facts[k] == null) delete facts[k]
  return facts
}

export interface DescribeOptions {
  /** read the GGUF header for architecture, layers, ...; false = name, size, digest only. @default true */
  metadata?: boolean
  /** ModelInfo.source. @default 'file' */
  source?: ModelInfo['source']
  /** full sha256 when already known (Ollama blob names) */
  sha256?: string
}

/**
 * Describes one GGUF model without loading it: name, size (all shards), a cheap digest (sha256 of
 * the first MiB and the size) and the header facts. A file that is not GGUF throws; a header
 * that cannot be parsed leaves the facts out.
 */
export async function describeModel (path: string, name = modelNameFromPath(path), opts: DescribeOptions = {}): Promise<LocalModel> {
  const st = await stat(path)
  if (!st.isFile()) throw new Error(`${path} is not a file`)
  const shards = await shardPaths(path)
  let sizeBytes = 0
  for (const p of shards) sizeBytes += p === path ? st.size : (await stat(p)).size
  const digest = await prefixDigest(path, st.size)
  const info: ModelInfo = { name, sizeBytes, digest, format: 'gguf' }
  if (opts.source != null) info.source = opts.source
  if (opts.sha256 != null) info.sha256 = opts.sha256
  if (opts.metadata !== false) {
    try {
      Object.assign(info, await readGgufFacts(shards))
    } catch {
      // an unusual header still leaves a usable catalog entry; llama.cpp will say more if it is served
    }
  }
  return { info, path }
}

/**
 * Files under `dir`, `depth` folder levels deep at most, in name order, hidden entries skipped;
 * `keep` decides for each entry that is not a folder being descended into (`depthLeft` is 0 at
 * the deepest level). A folder that cannot be read counts as empty.
 */
async function listFiles (dir: string, depth: number, keep: (e: Dirent, depthLeft: number) => boolean): Promise<string[]> {
  let entries
  try {
    entries = await readdir(dir, { withFileTypes: true })
  } catch {
    return []
  }
  const out: string[] = []
  for (const e of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    if (e.name.startsWith('.')) continue
    const full = join(dir, e.name)
    if (e.isDirectory() && depth > 0) out.push(...await listFiles(full, depth - 1, keep))
    else if (keep(e, depth)) out.push(full)
  }
  return out
}

/** GGUF files (or links to them) in a model folder. */
async function listGgufFiles (dir: string, depth: number): Promise<string[]> {
  return await listFiles(dir, depth, (e) => (e.isFile() || e.isSymbolicLink()) && /\.gguf$/i.test(e.name))
}

export interface ScanOptions {
  /** folder levels below the given one that are searched. @default 2 */
  depth?: number
  metadata?: boolean
  /** called for each file that could not be described; the scan goes on */
  onError?: (path: string, err: Error) => void
}

/**
 * Finds the GGUF models in a folder (and `depth` levels below): one entry per model, a split
 * model once (by its first shard), multimodal projectors (`mmproj*`) left out. Names are the
 * path below `dir` without `.gguf`, so two folders' `model.gguf` stay apart.
 */
export async function scanModelDir (dir: string, opts: ScanOptions = {}): Promise<LocalModel[]> {
  const files = await listGgufFiles(dir, opts.depth ?? 2)
  const out: LocalModel[] = []
  for (const file of files) {
    const shard = parseGgufShardFilename(file)
    if (shard != null && Number(shard.shard) !== 1) continue
    if (/^mmproj/i.test(basename(file))) continue
    const rel = relative(dir, file).split(sep).join('/')
    const relShard = parseGgufShardFilename(rel)
    const name = (relShard != null ? relShard.prefix : rel).replace(/\.gguf$/i, '')
    try {
      out.push(await describeModel(file, name, { ...(opts.metadata != null ? { metadata: opts.metadata } : {}) }))
    } catch (err) {
      opts.onError?.(file, err as Error)
    }
  }
  return out
}

/** Ollama's model store: `$OLLAMA_MODELS`, else `~/.ollama/models`. */
export function defaultOllamaStore (): string {
  const env = process.env['OLLAMA_MODELS']
  return env != null && env !== '' ? env : join(homedir(), '.ollama', 'models')
}

/** Media type of the GGUF layer in an Ollama manifest. */
const OLLAMA_MODEL_LAYER = 'application/vnd.ollama.image.model'
const OLLAMA_DEFAULT_REGISTRY = 'registry.ollama.ai'
const OLLAMA_DEFAULT_NAMESPACE = 'library'

interface OllamaManifest {
  layers?: Array<{ mediaType?: string, digest?: string, size?: number }>
}

/**
 * Ollama's name for a manifest at `manifests/<registry>/<namespace>/<model>/<tag>`:
 * `model:tag` for the default registry and `library`, `namespace/model:tag` for another
 * namespace, `registry/namespace/model:tag` for another registry.
 */
export function ollamaModelName (registry: string, namespace: string, model: string, tag: string): string {
  if (registry === OLLAMA_DEFAULT_REGISTRY) {
    return namespace === OLLAMA_DEFAULT_NAMESPACE ? `${model}:${tag}` : `${namespace}/${model}:${tag}`
  }
  return `${registry}/${namespace}/${model}:${tag}`
}

/**
 * Reads Ollama's model store as Ollama lays it out: `manifests/<registry>/<ns>/<model>/<tag>`
 * (JSON, its `application/vnd.ollama.image.model` layer names the weights by digest) and
 * `blobs/sha256-<hex>` (the GGUF file). Each model is described from its blob's header; its
 * full sha256 comes free from the blob name. Works without Ollama running.
 */
export async function scanOllamaStore (root: string, opts: ScanOptions = {}): Promise<LocalModel[]> {
  const manifests = join(root, 'manifests')
  const out: LocalModel[] = []
  // manifests/<registry>/<namespace>/<model>/<tag>: files at the fourth level only
  for (const file of await listFiles(manifests, 3, (e, depthLeft) => e.isFile() && depthLeft === 0)) {
    const parts = relative(manifests, file).split(sep)
    if (parts.length !== 4) continue
    const [registry, namespace, model, tag] = parts as [string, string, string, string]
    const name = ollamaModelName(registry, namespace, model, tag)
    try {
      const manifest = JSON.parse(await readFile(file, 'utf8')) as OllamaManifest
      const layer = manifest.layers?.find((l) => l.mediaType === OLLAMA_MODEL_LAYER)
      if (layer?.digest == null) throw new Error('manifest has no model layer')
      const m = /^sha256[:-]([0-9a-f]{64})$/.exec(layer.digest)
      if (m?.[1] == null) throw new Error(`unexpected layer digest ${layer.digest}`)
      const blob = join(root, 'blobs', `sha256-${m[1]}`)
      out.push(await describeModel(blob, name, { source: 'ollama', sha256: m[1], ...(opts.metadata != null ? { metadata: opts.metadata } : {}) }))
    } catch (err) {
      opts.onError?.(file, err as Error)
    }
  }
  return out
}
