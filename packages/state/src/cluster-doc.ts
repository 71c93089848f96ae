import * as Y from 'yjs'
import { NodeRecordSchema, type NodeRecord } from '@llmesh/protocol'

/** Name of the top-level Y.Map holding one NodeRecord per peer, keyed by peer id. */
export const NODES = 'nodes'

/** Transaction origin of updates applied from the network; local writes use the default. */
export const REMOTE_ORIGIN = Symbol('llmesh-remote')

export type RejectReason = 'decode' | 'nested' | 'foreign-entry' | 'foreign-delete' | 'unresolved' | 'client-key-mismatch'

export type ApplyResult = { applied: true } | { applied: false, reason: RejectReason }

export interface ClusterDocEvents {
  /** a local write produced this delta: publish it */
  localUpdate: (update: Uint8Array) => void
}

/**
 * The durable cluster state (Yjs). Each entry of `nodes` has ONE writer: the peer whose id is
 * the key. Remote updates are checked before they are applied: every item an update writes
 * must belong to the sender's own entry (gossip), and a Yjs client id may only ever write one
 * entry (sync). Values are plain JSON records, replaced whole on change, so Yjs garbage
 * collects the previous value and the document stays bounded.
 */
export class ClusterDoc {
  readonly doc: Y.Doc
  readonly peerId: string
  private readonly nodes: Y.Map<unknown>
  /** which entry each Yjs client id writes; a client never writes two entries */
  private readonly clientKey = new Map<number, string>()
  private readonly listeners = new Set<(update: Uint8Array) => void>()
  /** validated records, dropped on every document update */
  private cache?: Map<string, NodeRecord>
  /** remote updates dropped, by reason */
  readonly rejected = new Map<RejectReason, number>()
  /**
   * Whether a peer may delete another peer's entry (pruning a long-dead host). Deny by
   * default; the mesh installs its deterministic pruning rule here.
   */
  mayPrune: (key: string, sender: string) => boolean = () => false

  constructor (peerId: string, snapshot?: Uint8Array) {
    this.peerId = peerId
    this.doc = new Y.Doc()
    this.nodes = this.doc.getMap(NODES)
    if (snapshot != null) {
      Y.applyUpdate(this.doc, snapshot, REMOTE_ORIGIN)
      this.indexClients()
    }
    this.doc.on('update', (update: Uint8Array, origin: unknown) => {
      this.cache = undefined
      if (origin === REMOTE_ORIGIN) return
      for (const fn of this.listeners) fn(update)
    })
  }

  /** Calls `fn` with the peer ids whose entries appeared or vanished, after every change. */
  onMembershipChange (fn: (added: string[], removed: string[]) => void): () => void {
    const observer = (event: Y.YMapEvent<unknown>): void => {
      const added: string[] = []
      const removed: string[] = []
      for (const [key, change] of event.changes.keys) {
        if (change.action === 'add') added.push(key)
        else if (change.action === 'delete') removed.push(key)
      }
      if (added.length > 0 || removed.length > 0) fn(added, removed)
    }
    this.nodes.observe(observer)
    return () => { this.nodes.unobserve(observer) }
  }

  onLocalUpdate (fn: (update: Uint8Array) => void): () => void {
    this.listeners.add(fn)
    return () => this.listeners.delete(fn)
  }

  /**
   * Writes this peer's own record; a no-op when nothing but `updatedAt` would change, unless
   * `force` (the periodic refresh that keeps a live entry from being pruned).
   */
  setSelf (record: NodeRecord, force = false): boolean {
    if (record.peerId !== this.peerId) throw new Error('a peer writes only its own record')
    const current = this.nodes.get(this.peerId) as NodeRecord | undefined
    if (!force && current != null && sameRecord(current, record)) return false
    this.nodes.set(this.peerId, record)
    this.clientKey.set(this.doc.clientID, this.peerId)
    return true
  }

  /**
   * Deletes the entries of long-gone peers. Only the peer chosen by the pruning rule calls
   * this; every receiver re-checks the rule through `mayPrune` before accepting.
   */
  prune (peerIds: string[]): number {
    let n = 0
    this.doc.transact(() => {
      for (const id of peerIds) {
        if (id === this.peerId || !this.nodes.has(id)) continue
        this.nodes.delete(id)
        n++
      }
    })
    return n
  }

  /** Validated records of every peer, own included. Entries that fail the schema are skipped. */
  records (): NodeRecord[] {
    return [...this.validated().values()]
  }

  get (peerId: string): NodeRecord | undefined {
    return this.validated().get(peerId)
  }

  /**
   * The entries that pass the schema, validated once per document change: routers read them
   * on every request, the document changes a few times a minute.
   */
  private validated (): Map<string, NodeRecord> {
    if (this.cache != null) return this.cache
    const out = new Map<string, NodeRecord>()
    for (const [key, value] of this.nodes.entries()) {
      const parsed = NodeRecordSchema.safeParse(value)
      if (parsed.success && parsed.data.peerId === key) out.set(key, parsed.data)
    }
    this.cache = out
    return out
  }

  /**
   * Applies an update received from the network. `sender` is the peer id that signed a gossip
   * delta (it may only touch its own entry); for state-vector sync it is undefined and only the
   * one-entry-per-client rule applies.
   */
  applyRemote (update: Uint8Array, sender?: string): ApplyResult {
    const verdict = this.check(update, sender)
    if (verdict != null) {
      this.rejected.set(verdict, (this.rejected.get(verdict) ?? 0) + 1)
      return { applied: false, reason: verdict }
    }
    try {
      Y.applyUpdate(this.doc, update, REMOTE_ORIGIN)
    } catch {
      this.rejected.set('decode', (this.rejected.get('decode') ?? 0) + 1)
      return { applied: false, reason: 'decode' }
    }
    this.indexClients()
    return { applied: true }
  }

  /** True when Yjs holds updates that wait for a missing one: time for a state-vector sync. */
  hasPending (): boolean {
    return this.doc.store.pendingStructs != null || this.doc.store.pendingDs != null
  }

  stateVector (): Uint8Array {
    return Y.encodeStateVector(this.doc)
  }

  /** What a peer with state vector `sv` is missing. */
  diff (sv: Uint8Array): Uint8Array {
    return Y.encodeStateAsUpdate(this.doc, sv)
  }

  snapshot (): Uint8Array {
    return Y.encodeStateAsUpdate(this.doc)
  }

  destroy (): void {
    this.listeners.clear()
    this.doc.destroy()
  }

  private check (update: Uint8Array, sender: string | undefined): RejectReason | undefined {
    let decoded: ReturnType<typeof Y.decodeUpdate>
    try {
      decoded = Y.decodeUpdate(update)
    } catch {
      return 'decode'
    }
    // keys of clients first seen in this very update
    const seen = new Map<number, string>()
    const keyOfClient = (client: number): string | undefined => this.clientKey.get(client) ?? seen.get(client)
    for (const struct of decoded.structs) {
      if (!(struct instanceof Y.Item)) continue // GC and Skip carry no content
      if (struct.parent != null && typeof struct.parent !== 'string') return 'nested'
      if (typeof struct.parent === 'string' && struct.parent !== NODES) return 'nested'
      const key = struct.parentSub ??
        keyOfClient(struct.id.client) ??
        (struct.origin != null ? keyOfClient(struct.origin.client) : undefined) ??
        (struct.rightOrigin != null ? keyOfClient(struct.rightOrigin.client) : undefined)
      if (key == null) {
        if (sender != null) return 'unresolved'
        continue
      }
      const bound = keyOfClient(struct.id.client)
      if (bound != null && bound !== key) return 'client-key-mismatch'
      if (sender != null && key !== sender) return 'foreign-entry'
      seen.set(struct.id.client, key)
    }
    if (sender != null) {
      for (const client of decoded.ds.clients.keys()) {
        const key = keyOfClient(client)
        if (key != null && key !== sender && !this.mayPrune(key, sender)) return 'foreign-delete'
      }
    }
    return undefined
  }

  /** Records which entry every client id in the store has written. */
  private indexClients (): void {
    for (const [client, structs] of this.doc.store.clients) {
      if (this.clientKey.has(client)) continue
      for (const struct of structs) {
        if (struct instanceof Y.Item && struct.parentSub != null) {
          this.clientKey.set(client, struct.parentSub)
          break
        }
      }
    }
  }
}

function sameRecord (a: NodeRecord, b: NodeRecord): boolean {
  return JSON.stringify({ ...a, updatedAt: 0 }) === JSON.stringify({ ...b, updatedAt: 0 })
}
