import { createHash } from 'node:crypto'
import { open, stat } from 'node:fs/promises'
import { basename } from 'node:path'
import type { ModelInfo } from '@llmesh/protocol'

/** Bytes of a model file hashed into its digest, with the file size. @default 1 MiB */
const DIGEST_PREFIX_BYTES = 1024 * 1024

export interface LocalModel {
  info: ModelInfo
  /** stays on this host: never published */
  path: string
}

/** Model name users address: the configured name, else the file name without `.gguf`. */
export function modelNameFromPath (path: string): string {
  return basename(path).replace(/\.gguf$/i, '')
}

/**
 * Describes one GGUF file without loading it: name, size and a cheap digest (sha256 of the
 * first MiB and the size) that tells copies of the same file apart from different files.
 */
export async function describeModel (path: string, name = modelNameFromPath(path)): Promise<LocalModel> {
  const st = await stat(path)
  if (!st.isFile()) throw new Error(`${path} is not a file`)
  const fh = await open(path, 'r')
  try {
    const buf = Buffer.alloc(Math.min(DIGEST_PREFIX_BYTES, st.size))
    await fh.read(buf, 0, buf.length, 0)
    if (buf.subarray(0, 4).toString('latin1') !== 'GGUF') throw new Error(`${path} is not a GGUF file`)
    const digest = createHash('sha256').update(buf).update(String(st.size)).digest('hex')
    return { info: { name, sizeBytes: st.size, digest, format: 'gguf' }, path }
  } finally {
    await fh.close()
  }
}
