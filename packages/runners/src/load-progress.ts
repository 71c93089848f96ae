/**
 * Reads llama.cpp's default load progress from a runner's stderr. That callback writes, after
 * the `load_tensors` lines, one '.' each time a tensor's load moves the loaded share past a
 * whole percent (never more than 100), and a newline at 100 %. So dots / 100 is a lower bound
 * of the share loaded, and the newline ending the dots is the end of the load.
 *
 * Builds of llama-server that install a progress callback of their own print no dots: then this
 * reports nothing (such builds report through `parseChildLoadProgress` instead), and the runner
 * publishes no progress rather than a guess.
 */
export class LoadDotsParser {
  private readonly onProgress: (fraction: number) => void
  /** a `load_tensors` line was seen: dots at the start of a line are progress */
  private armed = false
  /** the current line has only dots so far */
  private inDots = true
  private dots = 0
  private done = false
  /** the start of the current line, to find `load_tensors` in */
  private line = ''

  constructor (onProgress: (fraction: number) => void) {
    this.onProgress = onProgress
  }

  /** Feeds stderr text as it arrives (any chunking). */
  push (text: string): void {
    if (this.done) return
    for (const ch of text) {
      if (ch === '\n') {
        if (this.armed && this.inDots && this.dots > 0) {
          this.done = true
          this.onProgress(1)
          return
        }
        if (!this.armed && this.line.includes('load_tensors')) this.armed = true
        this.line = ''
        this.inDots = true
        this.dots = 0
        continue
      }
      if (this.armed && this.inDots && ch === '.') {
        this.dots++
        continue
      }
      this.inDots = false
      if (!this.armed && this.line.length < 256) this.line += ch
    }
    if (this.armed && this.inDots && this.dots > 0) this.onProgress(Math.min(this.dots, 99) / 100)
  }
}

/** How llama-server, run as a router's child, starts a line reporting its state on stdout. */
export const CHILD_STATE_PREFIX = 'cmd_child_to_router:state:'

/**
 * The share loaded in one stdout line of llama-server run as a router's child:
 * `cmd_child_to_router:state:{"state":"loading","payload":{"stages":[...],"current":"text_model","value":0.42}}`.
 * A load goes through its stages in order (text model, then a draft and a projector where there
 * are), each reporting 0..1: the whole is the stages done plus the current one's share. Undefined
 * for any other line, another state, or a report that does not parse.
 */
export function parseChildLoadProgress (line: string): number | undefined {
  const at = line.indexOf(CHILD_STATE_PREFIX)
  if (at < 0) return undefined
  let msg: unknown
  try { msg = JSON.parse(line.slice(at + CHILD_STATE_PREFIX.length)) } catch { return undefined }
  if (typeof msg !== 'object' || msg == null) return undefined
  const { state, payload } = msg as { state?: unknown, payload?: unknown }
  if (state !== 'loading' || typeof payload !== 'object' || payload == null) return undefined
  const { stages, current, value } = payload as { stages?: unknown, current?: unknown, value?: unknown }
  if (typeof value !== 'number' || !Number.isFinite(value)) return undefined
  const share = Math.min(1, Math.max(0, value))
  const index = Array.isArray(stages) && typeof current === 'string' ? stages.indexOf(current) : -1
  if (index < 0) return share
  return (index + share) / (stages as unknown[]).length
}
