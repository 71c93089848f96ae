import { z } from 'zod'
import { ErrorCodes, type ErrorCode } from './errors.js'
import type { AdmissionSnapshot } from './admission.js'

/**
 * `/llmesh/infer/1` frames. Each frame is length-prefixed on the stream; its first byte is the
 * kind. The requester sends one REQUEST; the server answers HEAD, then DATA frames (raw
 * response bytes, e.g. SSE), then END, or ERROR at any point. A server that set `keepAlive` in
 * its HEAD (or ERROR) then reads the next REQUEST on the same stream; otherwise the stream ends
 * with the answer. One request at a time per stream.
 * ONLY APPEND TO THIS LIST.
 */
export const FrameKind = {
  REQUEST: 1,
  HEAD: 2,
  DATA: 3,
  END: 4,
  ERROR: 5,
  /**
   * Server to requester, payload empty: "still working on it" (queued, prefill, a non-streaming
   * answer being generated), sent only to a requester that asked for it (keepaliveMs) and only
   * while the answer has sent nothing else for that long.
   */
  KEEPALIVE: 6
} as const
export type FrameKind = typeof FrameKind[keyof typeof FrameKind]

/** Largest request body a peer accepts, in bytes. */
export const MAX_INFER_REQUEST_BYTES = 8 * 1024 * 1024

/**
 * Runner API paths a request may ask a target to call. ONLY APPEND TO THIS LIST: an older peer
 * refuses a path it does not know (as a malformed request).
 */
export const INFER_PATHS = ['/v1/chat/completions', '/v1/completions', '/v1/embeddings'] as const
export type InferPath = typeof INFER_PATHS[number]

export const InferRequestSchema = z.object({
  /** request id of the entry agent, for logs on both sides */
  id: z.string().max(128),
  /** which API path of the runner to call, e.g. /v1/chat/completions */
  path: z.enum(INFER_PATHS),
  model: z.string().min(1).max(256),
  /** the runner chosen by the router; the target may pick another one for the same model */
  runnerId: z.string().max(128).optional(),
  body: z.record(z.string(), z.unknown()),
  // --- optional, appended: a peer that does not know them serves without admission hints ---
  /** 0-10, higher first, for the target's admission queue. @default 5 */
  priority: z.number().int().min(0).max(10).optional(),
  /**
   * Wait in the target's queue when no slot is free (the router has nowhere better to go).
   * Unset or false: a full target answers BUSY at once and the router tries the next host.
   */
  mayQueue: z.boolean().optional(),
  /** ms left until the request's deadline when it was sent (relative: peers' clocks differ) */
  deadlineMs: z.number().int().nonnegative().max(24 * 3600 * 1000).optional(),
  /**
   * Send a KEEPALIVE frame whenever the answer has sent nothing for this many ms, so the
   * requester can tell a working peer from a silent one. Unset: no keepalives (older requesters).
   */
  keepaliveMs: z.number().int().positive().max(3600 * 1000).optional(),
  /** start the model here even when it does not fit this host's model memory (x-llmesh-load-anyway) */
  loadAnyway: z.boolean().optional(),
  /** the conversation's prefix key: the target remembers it holds its cache (and says so in heartbeats) */
  prefixKey: z.string().min(1).max(32).optional()
})
export type InferRequest = z.infer<typeof InferRequestSchema>

export const InferHeadSchema = z.object({
  status: z.number().int().min(100).max(599),
  contentType: z.string().max(256),
  runnerId: z.string().max(128),
  // --- optional, appended: a peer that does not know it ignores it and uses a stream per request ---
  /** after this answer's END the server reads another REQUEST on the same stream */
  keepAlive: z.boolean().optional()
})
export type InferHead = z.infer<typeof InferHeadSchema>

export const InferErrorSchema = z.object({
  code: z.string().max(64).transform((c): ErrorCode => (Object.hasOwn(ErrorCodes, c) ? c as ErrorCode : 'INTERNAL')),
  message: z.string().max(4096),
  /** as in the head: the server reads another REQUEST on the same stream after this error */
  keepAlive: z.boolean().optional(),
  // --- optional, appended ---
  /** with BUSY: the target's admission figures (see BusyError) */
  admission: (z.object({
    slotsBusy: z.number().int().nonnegative(),
    slotsTotal: z.number().int().nonnegative(),
    queueDepth: z.number().int().nonnegative()
  }) satisfies z.ZodType<AdmissionSnapshot>).optional(),
  /** with QUEUE_FULL: the target's Retry-After, seconds (see QueueFullError) */
  retryAfterSec: z.number().nonnegative().max(3600).optional()
})
export type InferError = z.infer<typeof InferErrorSchema>

const encoder = new TextEncoder()
const decoder = new TextDecoder()

export function encodeFrame (kind: FrameKind, payload?: Uint8Array | object): Uint8Array {
  const body = payload == null ? new Uint8Array(0) : payload instanceof Uint8Array ? payload : encoder.encode(JSON.stringify(payload))
  const out = new Uint8Array(1 + body.length)
  out[0] = kind
  out.set(body, 1)
  return out
}

export interface DecodedFrame { kind: number, payload: Uint8Array }

export function decodeFrame (frame: Uint8Array): DecodedFrame {
  if (frame.length === 0) return { kind: 0, payload: frame }
  return { kind: frame[0] ?? 0, payload: frame.subarray(1) }
}

/** Parses a frame's JSON payload against a schema; returns undefined when it does not fit. */
export function parseFramePayload<T> (schema: z.ZodType<T>, payload: Uint8Array): T | undefined {
  let json: unknown
  try {
    json = JSON.parse(decoder.decode(payload))
  } catch {
    return undefined
  }
  const parsed = schema.safeParse(json)
  return parsed.success ? parsed.data : undefined
}
