import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createHash } from 'node:crypto'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { GGUFValueType, serializeGgufMetadata, type GGUFTypedMetadata } from '@huggingface/gguf'
import { writeTinyLlamaGguf } from '@llmesh/testkit'
import { describeModel, ollamaModelName, scanModelDir, scanOllamaStore } from './catalog.js'

let dir: string

/** A GGUF with only a header: an MoE model's key/values and no tensors. */
function moeHeader (): Uint8Array {
  const kv = (value: unknown, type: GGUFValueType): { value: unknown, type: GGUFValueType } => ({ value, type })
  const md = {
    version: kv(3, GGUFValueType.UINT32),
    tensor_count: kv(0n, GGUFValueType.UINT64),
    kv_count: kv(9n, GGUFValueType.UINT64),
    'general.architecture': kv('qwen2moe', GGUFValueType.STRING),
    'general.file_type': kv(15, GGUFValueType.UINT32),
    'qwen2moe.block_count': kv(24, GGUFValueType.UINT32),
    'qwen2moe.context_length': kv(32768, GGUFValueType.UINT32),
    'qwen2moe.embedding_length': kv(2048, GGUFValueType.UINT32),
    'qwen2moe.attention.head_count': kv(16, GGUFValueType.UINT32),
    'qwen2moe.attention.head_count_kv': kv(16, GGUFValueType.UINT32),
    'qwen2moe.expert_count': kv(60, GGUFValueType.UINT32),
    'qwen2moe.expert_used_count': kv(4, GGUFValueType.UINT32)
  } as unknown as GGUFTypedMetadata
  return serializeGgufMetadata(md)
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'llmesh-catalog-'))
  const models = join(dir, 'models')
  await mkdir(join(models, 'sub'), { recursive: true })
  await writeFile(join(models, 'tiny-a.gguf'), writeTinyLlamaGguf({ seed: 1 }))
  await writeFile(join(models, 'sub', 'tiny-b.gguf'), writeTinyLlamaGguf({ seed: 2, nLayer: 3, nCtx: 512 }))
  await writeFile(join(models, 'moe.gguf'), moeHeader())
  await writeFile(join(models, 'mmproj-vision.gguf'), writeTinyLlamaGguf({ seed: 3 }))
  await writeFile(join(models, 'notes.txt'), 'not a model')
  await writeFile(join(models, 'broken.gguf'), 'definitely not gguf')

  // Ollama's store: manifests/<registry>/<namespace>/<model>/<tag> -> blobs/sha256-<hex>
  const store = join(dir, 'ollama')
  const blob = writeTinyLlamaGguf({ seed: 4 })
  const sha = createHash('sha256').update(blob).digest('hex')
  await mkdir(join(store, 'blobs'), { recursive: true })
  await writeFile(join(store, 'blobs', `sha256-${sha}`), blob)
  const config = Buffer.from('{"model_format":"gguf","model_family":"llama"}')
  const configSha = createHash('sha256').update(config).digest('hex')
  await writeFile(join(store, 'blobs', `sha256-${configSha}`), config)
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
    config: { mediaType: 'application/vnd.docker.container.image.v1+json', digest: `sha256:${configSha}`, size: config.length },
    layers: [
      { mediaType: 'application/vnd.ollama.image.model', digest: `sha256:${sha}`, size: blob.length },
      { mediaType: 'application/vnd.ollama.image.template', digest: `sha256:${'c'.repeat(64)}`, size: 10 }
    ]
  })
  for (const [ns, model, tag] of [['library', 'tiny', 'latest'], ['someone', 'tiny', 'q8']]) {
    await mkdir(join(store, 'manifests', 'registry.ollama.ai', ns!, model!), { recursive: true })
    await writeFile(join(store, 'manifests', 'registry.ollama.ai', ns!, model!, tag!), manifest)
  }
  await mkdir(join(store, 'manifests', 'registry.ollama.ai', 'library', 'gone'), { recursive: true })
  await writeFile(join(store, 'manifests', 'registry.ollama.ai', 'library', 'gone', 'latest'), JSON.stringify({ layers: [{ mediaType: 'application/vnd.ollama.image.model', digest: `sha256:${'d'.repeat(64)}` }] }))
})

afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

describe('GGUF catalog', () => {
  it('reads architecture, parameters, layers, context, quantization and bytes per layer from the header', async () => {
    const m = await describeModel(join(dir, 'models', 'sub', 'tiny-b.gguf'))
    expect(m.info).toMatchObject({ name: 'tiny-b', format: 'gguf', architecture: 'llama', layers: 3, contextLength: 512, embeddingLength: 64, quantization: 'F32' })
    expect(m.info.parameters).toBeGreaterThan(0)
    // a block of the tiny model: 4 64x64 attention + 3 64x128 FFN matrices + 2 norms, f32
    expect(m.info.bytesPerLayer).toBe((4 * 64 * 64 + 3 * 64 * 128 + 2 * 64) * 4)
    expect(m.info.otherBytes).toBeGreaterThan(0)
    expect(m.info.kvBytesPerToken).toBe(3 * 4 * (16 + 16) * 2)
    expect(m.info.experts).toBeUndefined()
  })

  it('reads the expert count of an MoE model', async () => {
    const m = await describeModel(join(dir, 'models', 'moe.gguf'))
    expect(m.info).toMatchObject({ architecture: 'qwen2moe', layers: 24, contextLength: 32768, experts: 60, expertsUsed: 4, quantization: 'Q4_K_M' })
  })

  it('scans a folder with several GGUFs: names relative to it, projectors and non-GGUF files skipped', async () => {
    const errors: string[] = []
    const models = await scanModelDir(join(dir, 'models'), { onError: (p) => { errors.push(p) } })
    expect(models.map((m) => m.info.name)).toEqual(['moe', 'sub/tiny-b', 'tiny-a'])
    expect(errors).toEqual([join(dir, 'models', 'broken.gguf')])
    const a = models.find((m) => m.info.name === 'tiny-a')!
    expect(a.info.digest).toMatch(/^[0-9a-f]{64}$/)
    expect(JSON.stringify(models.map((m) => m.info))).not.toContain(dir)
  })

  it('reads Ollama\'s store as Ollama lays it out: manifests -> blobs', async () => {
    const errors: string[] = []
    const models = await scanOllamaStore(join(dir, 'ollama'), { onError: (p) => { errors.push(p) } })
    expect(models.map((m) => m.info.name)).toEqual(['tiny:latest', 'someone/tiny:q8'])
    const m = models[0]!
    expect(m.info).toMatchObject({ source: 'ollama', format: 'gguf', architecture: 'llama', layers: 2 })
    expect(m.info.sha256).toMatch(/^[0-9a-f]{64}$/)
    expect(m.path).toBe(join(dir, 'ollama', 'blobs', `sha256-${m.info.sha256!}`))
    // the blob is the same bytes as writeTinyLlamaGguf({seed: 4}): its cheap digest matches a copy's
    await writeFile(join(dir, 'copy.gguf'), writeTinyLlamaGguf({ seed: 4 }))
    expect((await describeModel(join(dir, 'copy.gguf'))).info.digest).toBe(m.info.digest)
    expect(errors).toHaveLength(1) // 'gone' points at a missing blob
  })

  it('names Ollama models as Ollama does', () => {
    expect(ollamaModelName('registry.ollama.ai', 'library', 'llama3', 'latest')).toBe('llama3:latest')
    expect(ollamaModelName('registry.ollama.ai', 'me', 'llama3', '8b')).toBe('me/llama3:8b')
    expect(ollamaModelName('hf.co', 'org', 'repo', 'Q4_K_M')).toBe('hf.co/org/repo:Q4_K_M')
  })
})
