import { readFile, rename } from 'node:fs/promises'
import type { Logger } from 'pino'
import { writeFileDurable } from '@llmesh/mesh'
import { ClusterDoc, type ClusterDocOptions } from '@llmesh/state'

/**
 * One file of the data dir that the agent rewrites (cluster.snapshot, agent.json, runners.pid):
 * every write durable (see `writeFileDurable`), one write at a time. A save asked for while one
 * runs is not queued behind it one by one: the requests coalesce into one more write, of the
 * content as it is when that write begins (`content` is called then), and every one of them
 * resolves when it is done.
 */
export class DurableFile {
  readonly path: string
  private readonly mode: number
  private running?: Promise<void>
  private next?: { content: () => string | Uint8Array, done: Promise<void>, resolve: () => void, reject: (err: unknown) => void }

  constructor (path: string, mode = 0o600) {
    this.path = path
    this.mode = mode
  }

  /** Writes `content()` durably; resolves when what it returned (or newer) is on disk. */
  async save (content: () => string | Uint8Array): Promise<void> {
    if (this.running == null) {
      this.running = this.write(content)
      return await this.running
    }
    if (this.next == null) {
      let resolve!: () => void
      let reject!: (err: unknown) => void
      const done = new Promise<void>((res, rej) => { resolve = res; reject = rej })
      this.next = { content, done, resolve, reject }
    }
    this.next.content = content
    return await this.next.done
  }

  private async write (content: () => string | Uint8Array): Promise<void> {
    try {
      await writeFileDurable(this.path, content(), this.mode)
    } finally {
      const next = this.next
      this.next = undefined
      if (next == null) {
        this.running = undefined
      } else {
        this.running = this.write(next.content)
        this.running.then(next.resolve, next.reject)
      }
    }
  }
}

/**
 * The cluster document, warm from `<dataDir>/cluster.snapshot` when that decodes. A snapshot
 * that does not (truncated by a crash mid-write on a filesystem that lost the rename's order,
 * garbage, another program's file) is moved aside as `cluster.snapshot.corrupt-<ms>` for a
 * post-mortem, logged, and the agent starts cold: its peers fill the document again at the first
 * sync. Losing a warm start is better than not starting.
 */
export async function openClusterDoc (file: string, peerId: string, log: Logger, options: ClusterDocOptions): Promise<ClusterDoc> {
  let bytes: Buffer
  try {
    bytes = await readFile(file)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') log.warn({ file, err: (err as Error).message }, 'snapshot unreadable: starting cold')
    return new ClusterDoc(peerId, undefined, options)
  }
  try {
    return new ClusterDoc(peerId, new Uint8Array(bytes), options)
  } catch (err) {
    const aside = `${file}.corrupt-${Date.now()}`
    await rename(file, aside).catch((e: unknown) => { log.warn({ file, err: (e as Error).message }, 'corrupt snapshot not moved aside') })
    log.warn({ file, movedTo: aside, bytes: bytes.length, err: (err as Error).message }, 'snapshot does not decode: moved aside, starting cold')
    return new ClusterDoc(peerId, undefined, options)
  }
}
