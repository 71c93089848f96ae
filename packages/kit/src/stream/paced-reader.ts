import type { Clock } from '@llmesh/protocol'
import { MAX_UNREAD_BYTES } from '../constants.js'
import { AT_ONCE, Coalescer } from './coalescer.js'
import type { Sink } from './sink.js'

/** A source that can stop handing over chunks for a while (undici's dispatch controller is one). */
export interface PausableSource {
  pause: () => void
  resume: () => void
}

export interface PacedReaderInit {
  /** @default STREAM_COALESCE_MS */
  windowMs?: number
  /** @default MAX_UNREAD_BYTES */
  maxUnreadBytes?: number
  /** the consumer left before the end (`return()`): stop the source */
  onReturn?: () => void
  /** @default streamClock */
  clock?: Clock
}

/**
 * The paced read of a token stream: the source's chunks reach the consumer at most once per
 * window, the chunks of a window as one batch, and in between the source is paused, not read.
 * Paused, a runner connection's bytes wait in the kernel until the window ends, and one read
 * then takes them all: one wakeup, one parse and one pass of every layer above per window
 * instead of per token.
 *
 * The first chunk and a stream slower than one chunk per window pass at once, unchanged: the
 * coalescing rule of Coalescer, whose sink is this reader's queue. What the source hands over
 * while it is resumed at a window's end joins that window. The end and errors deliver what is
 * held first; an error is thrown to the consumer after the batches before it. A consumer more
 * than `maxUnreadBytes` behind pauses the source too, until it is below half of that (the
 * stream's backpressure, with nothing lost).
 *
 * The source's side calls `attach`, `push`, `end` and `fail`; the consumer iterates.
 */
export class PacedReader implements Sink, AsyncIterableIterator<Uint8Array> {
  private readonly window: Coalescer
  private source: PausableSource | undefined
  /** batches delivered and not yet taken by the consumer */
  private readonly ready: Uint8Array[] = []
  private readyBytes = 0
  private done = false
  private failure: unknown
  /** the consumer waiting for a batch */
  private wake: (() => void) | undefined
  /** `drained()` waiting for the consumer to catch up */
  private caughtUp: ((ok: boolean) => void) | undefined
  private heldForWindow = false
  private heldForConsumer = false
  private readonly maxUnreadBytes: number
  private readonly onReturn: (() => void) | undefined

  constructor (init: PacedReaderInit = {}) {
    this.maxUnreadBytes = init.maxUnreadBytes ?? MAX_UNREAD_BYTES
    this.onReturn = init.onReturn
    this.window = new Coalescer(this, { windowMs: init.windowMs, maxBytes: Infinity, soon: AT_ONCE, onWindowEnd: this.endWindow, clock: init.clock })
  }

  /** The source to pause and resume, once there is one. */
  attach (source: PausableSource): void {
    this.source = source
  }

  /** One chunk from the source. */
  push (chunk: Uint8Array): void {
    const ok = this.window.push(chunk)
    if (this.window.holding && !this.heldForWindow) {
      this.heldForWindow = true
      this.source?.pause()
    }
    if (!ok && !this.heldForConsumer) {
      this.heldForConsumer = true
      this.source?.pause()
      void this.window.drained().then(this.consumerCaughtUp)
    }
  }

  /** The source ended: what is held is delivered, then the consumer sees the end. */
  end (): void {
    this.done = true
    this.window.flush()
    this.settle()
  }

  /** The source failed: what is held is delivered, then the consumer gets `err`. */
  fail (err: unknown): void {
    this.done = true
    this.failure = err
    this.window.flush()
    this.settle()
  }

  /** Sink side (the window's batches): queued for the consumer; false once it is too far behind. */
  write (batch: Uint8Array): boolean {
    this.ready.push(batch)
    this.readyBytes += batch.byteLength
    this.notify()
    return this.readyBytes < this.maxUnreadBytes
  }

  /** Sink side: resolves once the consumer is below half of maxUnreadBytes, or the stream is over. */
  async drained (): Promise<boolean> {
    if (this.done || this.readyBytes < this.maxUnreadBytes / 2) return true
    return await new Promise<boolean>((resolve) => { this.caughtUp = resolve })
  }

  [Symbol.asyncIterator] (): this {
    return this
  }

  async next (): Promise<IteratorResult<Uint8Array>> {
    for (;;) {
      const batch = this.ready.shift()
      if (batch !== undefined) {
        this.readyBytes -= batch.byteLength
        if (this.caughtUp !== undefined && this.readyBytes < this.maxUnreadBytes / 2) this.release(true)
        return { done: false, value: batch }
      }
      if (this.failure != null) throw this.failure
      if (this.done) return { done: true, value: undefined }
      await new Promise<void>((resolve) => { this.wake = resolve })
    }
  }

  /** The consumer leaves early: what is held is dropped and the source stopped. */
  async return (): Promise<IteratorResult<Uint8Array>> {
    if (!this.done) {
      this.done = true
      this.window.discard()
      this.settle()
      this.onReturn?.()
    }
    return { done: true, value: undefined }
  }

  private readonly endWindow = (): void => {
    this.heldForWindow = false
    this.resumeIfFree()
  }

  private readonly consumerCaughtUp = (): void => {
    this.heldForConsumer = false
    this.resumeIfFree()
  }

  private resumeIfFree (): void {
    if (this.heldForWindow || this.heldForConsumer || this.done) return
    this.source?.resume()
  }

  /** The stream is over: the consumer and a pending drained() stop waiting. */
  private settle (): void {
    this.notify()
    if (this.caughtUp !== undefined) this.release(true)
  }

  private release (ok: boolean): void {
    const resolve = this.caughtUp
    this.caughtUp = undefined
    resolve?.(ok)
  }

  private notify (): void {
    const wake = this.wake
    this.wake = undefined
    wake?.()
  }
}
