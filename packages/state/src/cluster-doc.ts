import * as Y from 'yjs'
import { NodeRecordSchema, PinsEntrySchema, PlacementsEntrySchema, type NodeRecord, type PinsEntry, type PlacementsEntry, type UnsignedNodeRecord } from '@llmesh/protocol'
import { MAX_DOC_BYTES, MAX_ENTRIES, MAX_PENDING_BYTES, MAX_RECORD_BYTES, PER_CLIENT_BYTES, SELF_REWRITE_MIN_INTERVAL_MS } from './constants.js'
import {
  NODES, PINS, PLACEMENTS, SECTIONS, entryContent,
  type InvalidReason, type RecordSigner, type RecordVerifier, type Section, type SectionEntries, type SignedEntry, type UnsignedSectionEntries
} from './record-trust.js'
import { NEVER_PRUNE, type PruneRule } from './prune-rule.js'

export { NODES }

/** The sections besides `nodes`, written with `setOwn`. */
export type OwnSection = typeof PLACEMENTS | typeof PINS

/** Each section's schema: what an entry must be before its signature is checked. */
const SCHEMAS = { nodes: NodeRecordSchema, placements: PlacementsEntrySchema, pins: PinsEntrySchema } as const

/** Transaction origin of updates applied from the network; local writes use the default. */
export const REMOTE_ORIGIN = Symbol('llmesh-remote')

/**
 * Why a remote update was refused whole. ONLY APPEND: the names are counters in `/mesh/stats`.
 * The last five are the document's hard bounds (see constants.ts); `bad-value` is a value JSON
 * cannot carry, `content-type` a Yjs content other than a plain value (text, binary, subdocs).
 */
export type RejectReason = 'decode' | 'nested' | 'foreign-entry' | 'foreign-delete' | 'unresolved' | 'client-key-mismatch' |
'bad-value' | 'content-type' | 'record-too-large' | 'too-many-entries' | 'doc-too-large'

export interface ClusterDocOptions {
  /** checks every record against its owner's key before it enters the view */
  verifier: RecordVerifier
  /** signs this peer's own record; without one `setSelf` throws */
  signer?: RecordSigner
  /** @default Date.now */
  now?: () => number
  /**
   * Which entries others may delete (see PruneRule, mayPrune). A document whose liveness source
   * exists only later (the mesh is built after the document) gets it once with `bindPruneRule`.
   * @default NEVER_PRUNE
   */
  pruneRule?: PruneRule
}

/** Counters of what the document kept out of the view or repaired. */
export interface ClusterDocStats {
  /** entries left out of the view, by reason: each distinct stored value counted once */
  invalidRecords: Map<InvalidReason, number>
  /** times this peer wrote its own entry again after someone else deleted or replaced it */
  selfRewrites: number
  /** records kept in the view after a delete or overwrite the pruning rule did not allow */
  keptAfterForeignChange: number
  /** times the backlog of parked updates passed MAX_PENDING_BYTES and was dropped */
  pendingDropped: number
}

/** What a stored value was found to be, cached per Yjs item: an entry's item changes with every write. */
type Verdict = { entry: SignedEntry, bytes: number } | { invalid: InvalidReason, bytes: number }

export type ApplyResult = { applied: true } | { applied: false, reason: RejectReason }

export interface ClusterDocEvents {
  /** a local write produced this delta: publish it */
  localUpdate: (update: Uint8Array) => void
}

/**
 * The durable cluster state (Yjs), in three sections (top-level maps): `nodes` (NodeRecord),
 * `placements` (PlacementsEntry), `pins` (PinsEntry). Every entry of every section has ONE
 * writer: the peer whose id is the key, and it signs the entry, over content that names the
 * section (entryContent). Two lines of defence:
 * - the views (`records()`, `get()`, `placements()`, `pins()`) hold only entries that pass their
 *   section's schema and the owner's signature, whatever path their bytes came by (gossip, sync,
 *   snapshot); a verdict is cached per stored item, so a document change costs one verification
 *   per changed entry;
 * - remote updates are checked before they are applied: every item an update writes must
 *   belong to the sender's own key (gossip), a Yjs client id may only ever write under one key
 *   (sync), in whichever sections, values are plain JSON, and the document's hard bounds hold
 *   over all sections together (constants.ts). A foreign delete in any section is accepted
 *   where the pruning rule allows deleting that key's node entry.
 * A foreign delete or overwrite that slips through (sync carries other peers' writes, so it
 * cannot be attributed) is undone by the owner, which writes its entry again at once. Meanwhile
 * every other peer keeps showing the last valid node record until the pruning rule allows its
 * removal; a placements or pins entry is not kept that way: it leaves the view until its owner's
 * rewrite arrives. The trade-off: those sections stay a plain function of the document (no view
 * state to reason about), and a sync that forges them can blank a host's placements or a peer's
 * pins for at most the owner's rewrite delay, which is rate-limited like every rewrite; readers
 * that act on a vanished entry (a model no longer placed) must tolerate that.
 * Values are replaced whole on change, so Yjs garbage collects the previous value.
 */
export class ClusterDoc {
  readonly doc: Y.Doc
  readonly peerId: string
  private readonly nodes: Y.Map<unknown>
  private readonly maps: Readonly<Record<Section, Y.Map<unknown>>>
  /** the section of each top-level map */
  private readonly sectionOf = new Map<unknown, Section>()
  /** which key each Yjs client id writes under (in any section); a client never writes under two keys */
  private readonly clientKey = new Map<number, string>()
  private readonly listeners = new Set<(update: Uint8Array) => void>()
  private readonly changeListeners = new Set<(sections: ReadonlySet<Section>) => void>()
  /** the view: verified records, rebuilt after every document update */
  private cache?: Map<string, NodeRecord>
  /** the views of the other sections: verified entries, rebuilt after every document update */
  private readonly views = new Map<OwnSection, Map<string, SignedEntry>>()
  /** keys whose view record is kept from before a delete or overwrite the pruning rule did not allow */
  private readonly kept = new Set<string>()
  private readonly verdicts = new WeakMap<object, Verdict>()
  private readonly verifier: RecordVerifier
  private readonly signer?: RecordSigner
  private readonly now: () => number
  /** per section, the value this peer last wrote under its key, and the entry it signed */
  private readonly own = new Map<Section, { value: SignedEntry, unsigned: UnsignedSectionEntries[Section] }>()
  private rewriteAt = 0
  private rewriteTimer?: ReturnType<typeof setTimeout>
  private destroyed = false
  /** remote updates dropped, by reason */
  readonly rejected = new Map<RejectReason, number>()
  readonly stats: ClusterDocStats = { invalidRecords: new Map(), selfRewrites: 0, keptAfterForeignChange: 0, pendingDropped: 0 }
  /** which entries others may delete; NEVER_PRUNE until given (constructor or bindPruneRule) */
  private mayPrune: PruneRule = NEVER_PRUNE
  private pruneRuleBound = false

  /**
   * @param snapshot a document saved by `snapshot()`; it passes the same checks as a sync
   * update, and an error is thrown when it does not decode or breaks a bound
   */
  constructor (peerId: string, snapshot: Uint8Array | undefined, opts: ClusterDocOptions) {
    this.peerId = peerId
    this.verifier = opts.verifier
    if (opts.signer != null) this.signer = opts.signer
    this.now = opts.now ?? Date.now
    if (opts.pruneRule != null) this.bindPruneRule(opts.pruneRule)
    this.doc = new Y.Doc()
    this.maps = { nodes: this.doc.getMap(NODES), placements: this.doc.getMap(PLACEMENTS), pins: this.doc.getMap(PINS) }
    this.nodes = this.maps.nodes
    for (const section of SECTIONS) {
      this.sectionOf.set(this.maps[section], section)
      this.maps[section].observe((event, transaction) => {
        if (transaction.origin === REMOTE_ORIGIN && event.keysChanged.has(this.peerId)) this.guardSelf()
      })
    }
    this.doc.on('update', (update: Uint8Array, origin: unknown, _doc: Y.Doc, transaction: Y.Transaction) => {
      this.cache = undefined
      this.views.clear()
      if (origin !== REMOTE_ORIGIN) for (const fn of this.listeners) fn(update)
      if (this.changeListeners.size > 0) this.changed(transaction)
    })
    if (snapshot != null) {
      const result = this.applyRemote(snapshot)
      if (!result.applied) throw new Error(`cluster snapshot refused: ${result.reason}`)
    }
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
   * Calls `fn` once after every transaction that changed the document, local or remote, with
   * the sections it touched; the views already show the change. Called synchronously at the end
   * of the transaction: `fn` may read the views and write its own entries. It should not throw:
   * an error it throws is not caught here but thrown again outside the transaction (an uncaught
   * exception), since inside it Yjs would pass it on as if the update had failed.
   */
  onChange (fn: (sections: ReadonlySet<Section>) => void): () => void {
    this.changeListeners.add(fn)
    return () => this.changeListeners.delete(fn)
  }

  private changed (transaction: Y.Transaction): void {
    const sections = new Set<Section>()
    for (const type of transaction.changed.keys()) {
      const section = this.sectionOf.get(type)
      if (section != null) sections.add(section)
    }
    if (sections.size === 0) return
    for (const fn of this.changeListeners) {
      try {
        fn(sections)
      } catch (err) {
        queueMicrotask(() => { throw err })
      }
    }
  }

  /**
   * Signs and writes this peer's own record; a no-op when nothing but `updatedAt` would change,
   * unless `force` (the periodic refresh that keeps a live entry from being pruned). A record
   * past MAX_RECORD_BYTES is not written (every peer would refuse it) and false is returned.
   */
  setSelf (record: UnsignedNodeRecord, force = false): boolean {
    return this.writeOwn(NODES, record, force)
  }

  /**
   * Signs and writes this peer's own entry of `placements` or `pins`, like `setSelf`: a no-op
   * when nothing but `updatedAt` would change; an entry past MAX_RECORD_BYTES is not written and
   * false is returned; a foreign delete or overwrite of it is undone as for the node record.
   */
  setOwn<S extends OwnSection> (section: S, entry: UnsignedSectionEntries[S]): boolean {
    if (section !== PLACEMENTS && section !== PINS) throw new Error(`not a section of own entries: ${String(section)}`)
    return this.writeOwn(section, entry, false)
  }

  private writeOwn<S extends Section> (section: S, entry: UnsignedSectionEntries[S], force: boolean): boolean {
    if (entry.peerId !== this.peerId) throw new Error('a peer writes only its own entries')
    if (this.signer == null) throw new Error('this cluster document has no signer')
    const map = this.maps[section]
    const current = this.own.get(section)?.value
    if (!force && current != null && map.get(this.peerId) === current && sameEntry(current, entry)) return false
    const { sig: _sig, ...unsigned } = entry as UnsignedSectionEntries[S] & { sig?: string }
    const value = { ...unsigned, sig: this.signer.sign(entryContent(section, unsigned)) } as unknown as SignedEntry
    if (jsonBytes(value) > MAX_RECORD_BYTES) {
      this.rejected.set('record-too-large', (this.rejected.get('record-too-large') ?? 0) + 1)
      return false
    }
    this.own.set(section, { value, unsigned: unsigned as UnsignedSectionEntries[S] })
    map.set(this.peerId, value)
    this.clientKey.set(this.doc.clientID, this.peerId)
    return true
  }

  /** Sections whose own entry no longer holds what this peer wrote. */
  private lostOwn (): Section[] {
    return [...this.own].filter(([section, { value }]) => this.maps[section].get(this.peerId) !== value).map(([section]) => section)
  }

  /**
   * One of our entries changed in a remote transaction: unless it still holds what we wrote,
   * someone deleted or replaced it. Write it again at once (a Yjs map keeps the item written
   * last, and ours now references theirs, so it wins everywhere), at most once per
   * SELF_REWRITE_MIN_INTERVAL_MS for all sections together.
   */
  private guardSelf (): void {
    if (this.rewriteTimer != null || this.lostOwn().length === 0) return
    const run = (): void => {
      this.rewriteTimer = undefined
      if (this.destroyed) return
      const lost = this.lostOwn()
      if (lost.length === 0) return
      this.rewriteAt = this.now()
      for (const section of lost) {
        this.stats.selfRewrites++
        this.writeOwn(section, { ...this.own.get(section)!.unsigned, updatedAt: this.now() }, true)
      }
    }
    // not inside the observer: Yjs is still cleaning up the remote transaction
    this.rewriteTimer = setTimeout(run, Math.max(0, this.rewriteAt + SELF_REWRITE_MIN_INTERVAL_MS - this.now()))
    this.rewriteTimer.unref?.()
  }

  /**
   * Gives the document its pruning rule, once: for a document built before its liveness source
   * (the agent opens the document, then starts the mesh that hears heartbeats). A second rule
   * throws: the rule must be the same for the document's whole life and on every peer.
   */
  bindPruneRule (rule: PruneRule): void {
    if (this.pruneRuleBound) throw new Error('the cluster document already has a pruning rule')
    this.pruneRuleBound = true
    this.mayPrune = rule
    this.cache = undefined
  }

  /**
   * Deletes the entries of long-gone peers, in every section, and returns how many it deleted.
   * Only the peer chosen by the pruning rule calls this; every receiver re-checks the rule (its
   * PruneRule, over the key's node record) before accepting.
   */
  prune (peerIds: string[]): number {
    let n = 0
    this.doc.transact(() => {
      for (const id of peerIds) {
        if (id === this.peerId) continue
        // the rule allowed it here: the view does not keep it either
        this.kept.delete(id)
        this.lastView.delete(id)
        this.cache = undefined
        for (const section of SECTIONS) {
          if (!this.maps[section].has(id)) continue
          this.maps[section].delete(id)
          n++
        }
      }
    })
    return n
  }

  /** Verified records of every peer, own included. Entries that fail the schema or the signature are skipped. */
  records (): NodeRecord[] {
    return [...this.validated().values()]
  }

  get (peerId: string): NodeRecord | undefined {
    return this.validated().get(peerId)
  }

  /** Verified placements entries by host peer id, own included (schema, key and the owner's signature). */
  placements (): ReadonlyMap<string, PlacementsEntry> {
    return this.view(PLACEMENTS) as ReadonlyMap<string, PlacementsEntry>
  }

  /** Verified pins entries by peer id, own included (schema, key and the owner's signature). */
  pins (): ReadonlyMap<string, PinsEntry> {
    return this.view(PINS) as ReadonlyMap<string, PinsEntry>
  }

  /** Keys of every entry in the document, in any section, verified or not. */
  keys (): string[] {
    const keys = new Set<string>()
    for (const section of SECTIONS) for (const key of this.maps[section].keys()) keys.add(key)
    return [...keys]
  }

  /** The view of a section other than `nodes`, rebuilt once per document change from cached verdicts. */
  private view (section: OwnSection): Map<string, SignedEntry> {
    const cached = this.views.get(section)
    if (cached != null) return cached
    const out = new Map<string, SignedEntry>()
    for (const [key, value] of this.maps[section].entries()) {
      const verdict = this.verdict(section, key, value)
      if ('entry' in verdict) out.set(key, verdict.entry)
    }
    this.views.set(section, out)
    return out
  }

  /**
   * The view, rebuilt once per document change from cached verdicts (routers read it on every
   * request, the document changes a few times a minute). A record that was in the view and
   * whose entry is now gone or invalid stays until the pruning rule allows its removal
   * (re-checked at every read while any is kept) or its owner writes a valid one again.
   * `applyRemote` reads the view before every update it applies, so "was in the view" means
   * "was valid in the document before the change", whether or not anyone read it in between.
   */
  private validated (): Map<string, NodeRecord> {
    if (this.cache != null) {
      if (this.kept.size > 0) this.expireKept(this.cache)
      return this.cache
    }
    const before = this.lastView
    const out = new Map<string, NodeRecord>()
    for (const [key, value] of this.nodes.entries()) {
      const verdict = this.verdict(NODES, key, value)
      if ('entry' in verdict) out.set(key, verdict.entry as NodeRecord)
    }
    for (const key of this.kept) if (!out.has(key) && before.has(key)) out.set(key, before.get(key)!)
    for (const key of this.kept) if (out.get(key) !== before.get(key)) this.kept.delete(key)
    for (const [key, last] of before) {
      if (out.has(key) || this.mayPrune(key, last)) continue
      out.set(key, last)
      this.kept.add(key)
      this.stats.keptAfterForeignChange++
    }
    this.expireKept(out)
    this.cache = out
    this.lastView = out
    return out
  }

  private lastView = new Map<string, NodeRecord>()

  private expireKept (view: Map<string, NodeRecord>): void {
    for (const key of this.kept) {
      const last = view.get(key)
      if (last != null && !this.mayPrune(key, last)) continue
      view.delete(key)
      this.kept.delete(key)
    }
  }

  /** What a stored value is, judged once per Yjs item and counted when invalid. */
  private verdict (section: Section, key: string, value: unknown): Verdict {
    // keyed by the Yjs item that holds the value (one per write, whatever the value's type;
    // an item sits in one section only)
    const item: object | undefined = this.maps[section]._map.get(key)
    const cached = item != null ? this.verdicts.get(item) : undefined
    if (cached != null) return cached
    const verdict = this.judge(section, key, value)
    if (item != null) this.verdicts.set(item, verdict)
    if ('invalid' in verdict) this.stats.invalidRecords.set(verdict.invalid, (this.stats.invalidRecords.get(verdict.invalid) ?? 0) + 1)
    return verdict
  }

  private judge (section: Section, key: string, value: unknown): Verdict {
    if (value == null || typeof value !== 'object' || Array.isArray(value)) return { invalid: 'schema', bytes: Math.max(0, jsonBytes(value)) }
    let content: Uint8Array
    try {
      content = entryContent(section, value as Record<string, unknown>)
    } catch {
      return { invalid: 'schema', bytes: 0 }
    }
    const bytes = content.length
    const parsed = SCHEMAS[section].safeParse(value)
    if (!parsed.success) return { invalid: 'schema', bytes }
    const entry: SectionEntries[typeof section] = parsed.data
    if (entry.peerId !== key) return { invalid: 'key-mismatch', bytes }
    let invalid: InvalidReason | undefined
    try {
      invalid = this.verifier.verify(entry, content, section)
    } catch {
      invalid = 'bad-signature'
    }
    return invalid != null ? { invalid, bytes } : { entry, bytes }
  }

  /**
   * Applies an update received from the network. `sender` is the peer id that signed a gossip
   * delta (it may only touch its own entry); for state-vector sync it is undefined and only the
   * one-entry-per-client rule applies. Never throws.
   */
  applyRemote (update: Uint8Array, sender?: string): ApplyResult {
    let verdict: RejectReason | undefined
    try {
      verdict = this.check(update, sender)
    } catch {
      verdict = 'decode'
    }
    if (verdict != null) {
      this.rejected.set(verdict, (this.rejected.get(verdict) ?? 0) + 1)
      return { applied: false, reason: verdict }
    }
    // the view is built lazily, but what it keeps after a foreign delete or overwrite is the
    // view before it: bring it up to date with the document first, else a record that arrived
    // since the last read (or a newer one of its owner) would leave no trace
    this.validated()
    try {
      Y.applyUpdate(this.doc, update, REMOTE_ORIGIN)
    } catch {
      this.rejected.set('decode', (this.rejected.get('decode') ?? 0) + 1)
      return { applied: false, reason: 'decode' }
    } finally {
      this.boundPending()
    }
    this.indexClients()
    return { applied: true }
  }

  /** Drops Yjs's backlog of parked updates once it passes MAX_PENDING_BYTES (a sync repairs real gaps). */
  private boundPending (): void {
    if (pendingBytes(this.doc.store) <= MAX_PENDING_BYTES) return
    this.doc.store.pendingStructs = null
    this.doc.store.pendingDs = null
    this.stats.pendingDropped++
  }

  /**
   * The document's size as the bounds count it: live entries' JSON in every section, a fixed
   * cost per client, the parked backlog.
   */
  size (): { entries: number, bytes: number } {
    let bytes = this.doc.store.clients.size * PER_CLIENT_BYTES + pendingBytes(this.doc.store)
    let entries = 0
    for (const section of SECTIONS) {
      entries += this.maps[section].size
      for (const [key, value] of this.maps[section].entries()) bytes += this.verdict(section, key, value).bytes
    }
    return { entries, bytes }
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
    this.destroyed = true
    clearTimeout(this.rewriteTimer)
    this.listeners.clear()
    this.changeListeners.clear()
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
    /**
     * largest value this update writes per section and key, and what it writes where the key
     * or the section is not known yet
     */
    const written = new Map<Section, Map<string, number>>()
    let unkeyedBytes = 0
    const newClients = new Set<number>()
    const sectionOf = this.sectionResolver(decoded.structs)
    for (const struct of decoded.structs) {
      if (!this.doc.store.clients.has(struct.id.client)) newClients.add(struct.id.client)
      if (!(struct instanceof Y.Item)) continue // GC and Skip carry no content
      if (struct.parent != null && typeof struct.parent !== 'string') return 'nested'
      if (typeof struct.parent === 'string' && !(SECTIONS as readonly string[]).includes(struct.parent)) return 'nested'
      // an item placed in a section but under no key sits in the map's list part: in no entry,
      // so no view or bound would ever see it (only a forged update writes one)
      if (typeof struct.parent === 'string' && struct.parentSub == null) return 'nested'
      if (struct.content instanceof Y.ContentType) return 'nested'
      let bytes = 0
      if (struct.content instanceof Y.ContentAny) {
        for (const v of struct.content.arr) {
          const n = jsonBytes(v)
          if (n < 0) return 'bad-value'
          bytes += n
        }
        if (bytes > MAX_RECORD_BYTES) return 'record-too-large'
      } else if (!(struct.content instanceof Y.ContentDeleted)) {
        return 'content-type'
      }
      const key = struct.parentSub ??
        keyOfClient(struct.id.client) ??
        (struct.origin != null ? keyOfClient(struct.origin.client) : undefined) ??
        (struct.rightOrigin != null ? keyOfClient(struct.rightOrigin.client) : undefined)
      if (key == null) {
        if (sender != null) return 'unresolved'
        unkeyedBytes += bytes
        continue
      }
      const bound = keyOfClient(struct.id.client)
      if (bound != null && bound !== key) return 'client-key-mismatch'
      if (sender != null && key !== sender) return 'foreign-entry'
      seen.set(struct.id.client, key)
      const section = sectionOf(struct)
      if (section == null) {
        // its neighbour is not here yet: Yjs parks it, and the parked backlog is counted
        unkeyedBytes += bytes
        continue
      }
      const inSection = written.get(section) ?? new Map<string, number>()
      written.set(section, inSection)
      inSection.set(key, Math.max(inSection.get(key) ?? 0, bytes))
    }
    if (sender != null) {
      // an update carries its whole delete set: only deletes of items still live here are news
      for (const [client, ranges] of decoded.ds.clients) {
        const key = keyOfClient(client)
        if (key == null || key === sender || !ranges.some((r) => this.deletesLive(client, r.clock, r.len))) continue
        if (!this.mayPrune(key, this.get(key), sender)) return 'foreign-delete'
      }
    }
    return this.checkBounds(written, unkeyedBytes, newClients.size)
  }

  /**
   * The hard bounds over all sections together, projected: every entry the update writes takes
   * its largest new value's size, entries it does not touch keep theirs. Deletes are not
   * subtracted (the projection only errs towards refusing), and only growth past a bound is
   * refused.
   */
  private checkBounds (written: Map<Section, Map<string, number>>, unkeyedBytes: number, newClients: number): RejectReason | undefined {
    const now = this.size()
    let entries = now.entries
    let bytes = now.bytes + unkeyedBytes + newClients * PER_CLIENT_BYTES
    for (const [section, inSection] of written) {
      const map = this.maps[section]
      for (const [key, n] of inSection) {
        const value: unknown = map.get(key)
        if (value === undefined && !map.has(key)) entries++
        else bytes -= this.verdict(section, key, value).bytes
        bytes += n
      }
    }
    if (entries > MAX_ENTRIES && entries > now.entries) return 'too-many-entries'
    if (bytes > MAX_DOC_BYTES && bytes > now.bytes) return 'doc-too-large'
    return undefined
  }

  /** Whether the range [clock, clock+len) of `client` holds an item of this document not yet deleted. */
  private deletesLive (client: number, clock: number, len: number): boolean {
    const structs = this.doc.store.clients.get(client)
    if (structs == null || structs.length === 0) return false
    const last = structs[structs.length - 1]!
    if (clock >= last.id.clock + last.length) return false
    let i = clock <= structs[0]!.id.clock ? 0 : Y.findIndexSS(structs, clock)
    for (; i < structs.length && structs[i]!.id.clock < clock + len; i++) {
      const struct = structs[i]!
      if (struct instanceof Y.Item && !struct.deleted) return true
    }
    return false
  }

  /**
   * The section each item of an update lands in, as Yjs will place it: its parent when the
   * update names one, else the section of its left neighbour (`origin`), else of its right one,
   * whether that neighbour is in this document or in the same update. Undefined when neither is
   * known yet (Yjs parks such an item). Follows chains of neighbours without recursion, each
   * item once.
   */
  private sectionResolver (structs: Array<Y.Item | Y.GC | Y.Skip>): (item: Y.Item) => Section | undefined {
    // this update's items by the ids a neighbour reference names: its first and its last clock
    const byId = new Map<string, Y.Item>()
    for (const struct of structs) {
      if (!(struct instanceof Y.Item)) continue
      byId.set(`${struct.id.client}:${struct.id.clock}`, struct)
      byId.set(`${struct.id.client}:${struct.id.clock + struct.length - 1}`, struct)
    }
    const resolved = new Map<Y.Item, Section | undefined>()
    const neighbour = (id: Y.ID | null): Y.Item | Section | undefined => {
      if (id == null) return undefined
      const inUpdate = byId.get(`${id.client}:${id.clock}`)
      if (inUpdate != null) return inUpdate
      const stored = this.storedItem(id)
      return stored != null ? this.sectionOf.get(stored.parent) : undefined
    }
    return (item) => {
      const path: Y.Item[] = []
      let at: Y.Item | Section | undefined = item
      while (at instanceof Y.Item) {
        if (resolved.has(at)) {
          at = resolved.get(at)
          break
        }
        // a cycle of neighbours (only a forged update has one) resolves to nothing
        resolved.set(at, undefined)
        path.push(at)
        if (typeof at.parent === 'string') {
          at = (SECTIONS as readonly string[]).includes(at.parent) ? at.parent as Section : undefined
          break
        }
        at = neighbour(at.origin) ?? neighbour(at.rightOrigin)
      }
      const section: Section | undefined = at
      for (const p of path) resolved.set(p, section)
      return section
    }
  }

  /** The item of this document that holds `id`, if there is one. */
  private storedItem (id: Y.ID): Y.Item | undefined {
    const structs = this.doc.store.clients.get(id.client)
    if (structs == null || structs.length === 0) return undefined
    const last = structs[structs.length - 1]!
    if (id.clock < structs[0]!.id.clock || id.clock >= last.id.clock + last.length) return undefined
    const struct = structs[Y.findIndexSS(structs, id.clock)]
    return struct instanceof Y.Item ? struct : undefined
  }

  /** Records which key every client id in the store has written under. */
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

function sameEntry (a: UnsignedSectionEntries[Section], b: UnsignedSectionEntries[Section]): boolean {
  return JSON.stringify({ ...a, updatedAt: 0, sig: '' }) === JSON.stringify({ ...b, updatedAt: 0, sig: '' })
}

/** Length of a value's JSON text, -1 for a value JSON cannot carry (bigint, cycles). */
function jsonBytes (value: unknown): number {
  try {
    return JSON.stringify(value)?.length ?? 0
  } catch {
    return -1
  }
}

function pendingBytes (store: Y.Doc['store']): number {
  return (store.pendingStructs?.update.length ?? 0) + (store.pendingDs?.length ?? 0)
}
