import type { Clock, TimerHandle } from '@llmesh/protocol'
import { MAX_BATCH_BYTES, STREAM_COALESCE_MS } from '../constants.js'
import { streamClock } from './clock.js'
import type { Sink } from './sink.js'

export interface CoalescerInit {
  /** @default STREAM_COALESCE_MS */
  windowMs?: number
  /** gathered bytes at which a batch goes at once, whatever the window @default MAX_BATCH_BYTES */
  maxBytes?: number
  /**
   * Gather `chunk.slice()` instead of the chunk, for a writer that reuses its buffer once
   * `push` returns (a Uint8Array's slice is a copy; a Buffer's is a view, as it always was here).
   * @default false
   */
  copy?: boolean
  /**
   * Runs a flush that is due now. `setImmediate`: at the end of this turn of the event loop, so
   * what the turn writes (a small answer's head, body and end) goes as one batch;
   * `process.nextTick`: once this turn's promise chains have run; `AT_ONCE`: inside `push`.
   * It is passed `flush`; an adapter that flushes the coalescer itself may ignore it.
   * @default setImmediate
   */
  soon?: (flush: () => void) => void
  /**
   * Called when a held window ends, just before its batch goes: a paced reader resumes its
   * source here, and what the source hands over meanwhile joins the batch.
   */
  onWindowEnd?: () => void
  /** @default streamClock */
  clock?: Clock
}

/** A `soon` that flushes inside `push`: the first chunk after a quiet window is passed on synchronously. */
export const AT_ONCE = (flush: () => void): void => { flush() }

/**
 * The coalescing write of a token stream: gathers the chunks of one window and hands them to a
 * sink as one batch. The first chunk after a quiet window goes at once (`soon`); a chunk that
 * comes less than `windowMs` after the last batch waits for the window to end, and every chunk
 * that comes meanwhile joins it. So a stream slower than one chunk per window passes chunk by
 * chunk, unchanged, and a fast one leaves at most once per window, its tokens together (see
 * STREAM_COALESCE_MS). A batch of `maxBytes` goes at once.
 *
 * Backpressure: `push` returns false once the sink asked to wait (a write returned false); the
 * writer then awaits `drained()`, which is the sink's own wait, before it pushes more. What a
 * coalescer holds is bounded by one window and `maxBytes`.
 *
 * One timer per held window, one batch per window (a single chunk is passed as it is, several
 * are merged into one buffer), nothing allocated per chunk beyond the writer's own chunk.
 */
export class Coalescer {
  /** batches handed on so far */
  flushes = 0
  private readonly chunks: Uint8Array[] = []
  private bytes = 0
  /** a flush is scheduled (soon or at the window's end) or under way: a chunk pushed now joins it */
  private pending = false
  private timer: TimerHandle | undefined
  private lastFlushAt = -Infinity
  /** the sink asked to wait and drained() has not seen it take writes again */
  private full = false
  private readonly windowMs: number
  private readonly maxBytes: number
  private readonly copy: boolean
  private readonly soon: (flush: () => void) => void
  private readonly onWindowEnd: (() => void) | undefined
  private readonly clock: Clock

  constructor (private readonly sink: Sink, init: CoalescerInit = {}) {
    this.windowMs = init.windowMs ?? STREAM_COALESCE_MS
    this.maxBytes = init.maxBytes ?? MAX_BATCH_BYTES
    this.copy = init.copy ?? false
    this.soon = init.soon ?? setImmediate
    this.onWindowEnd = init.onWindowEnd
    this.clock = init.clock ?? streamClock
  }

  /** Gathers one chunk; false when the writer should await `drained()` before the next one. */
  push (chunk: Uint8Array): boolean {
    this.chunks.push(this.copy ? chunk.slice() : chunk)
    this.bytes += chunk.byteLength
    if (this.bytes >= this.maxBytes) this.flush()
    else if (!this.pending) {
      this.pending = true
      const wait = this.lastFlushAt + this.windowMs - this.clock.now()
      if (wait > 0) this.timer = this.clock.setTimeout(this.endWindow, wait)
      else this.soon(this.flush)
    }
    return !this.full
  }

  /** A window is held: chunks wait for its end (a paced reader holds its source meanwhile). */
  get holding (): boolean {
    return this.timer !== undefined
  }

  /** What is gathered goes to the sink now (before the end of a stream, or a frame of the sink's own). */
  readonly flush = (): void => {
    const batch = this.take()
    if (batch !== undefined && !this.sink.write(batch)) this.full = true
  }

  /**
   * What is gathered, as one batch, taken out instead of written: for a sink that writes it
   * together with frames of its own. Counts as a flush for the window.
   */
  take (): Uint8Array | undefined {
    this.pending = false
    if (this.timer !== undefined) {
      this.clock.clearTimeout(this.timer)
      this.timer = undefined
    }
    const n = this.chunks.length
    if (n === 0) return undefined
    const batch = n === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.bytes)
    this.chunks.length = 0
    this.bytes = 0
    this.lastFlushAt = this.clock.now()
    this.flushes++
    return batch
  }

  /** Resolves true at once unless the sink asked to wait; then as the sink's `drained()` does. */
  async drained (): Promise<boolean> {
    if (!this.full) return true
    if (!await this.sink.drained()) return false
    this.full = false
    return true
  }

  /** Drops what is gathered and the window's timer: the stream was abandoned. */
  discard (): void {
    this.pending = false
    if (this.timer !== undefined) {
      this.clock.clearTimeout(this.timer)
      this.timer = undefined
    }
    this.chunks.length = 0
    this.bytes = 0
  }

  private readonly endWindow = (): void => {
    this.timer = undefined
    this.onWindowEnd?.()
    this.flush()
  }
}
