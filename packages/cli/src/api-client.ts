import { request, type Dispatcher } from 'undici'
import type { MeshView } from '@llmesh/agent'
import { API_TIMEOUT_MS } from './constants.js'

/** The agent a command asks, and the API key it presents ($LLMESH_API_KEY). */
export interface ApiTarget {
  /** base URL, no trailing slash */
  api: string
  apiKey?: string
}

/** Request headers with the bearer token, when there is a key. */
export function authHeaders (target: ApiTarget, extra: Record<string, string> = {}): Record<string, string> {
  return target.apiKey != null && target.apiKey !== '' ? { ...extra, authorization: `Bearer ${target.apiKey}` } : extra
}

/**
 * Sends one request to the agent and answers its body; every failure is one line saying what
 * failed: the agent unreachable, a key missing or refused, or the agent's own error message
 * (`{error:{message}}`).
 */
export async function apiCall (target: ApiTarget, method: Dispatcher.HttpMethod, path: string, body?: unknown): Promise<unknown> {
  const res = await send(target, method, path, body)
  const text = await res.body.text()
  if (res.statusCode >= 200 && res.statusCode < 300) {
    try {
      return JSON.parse(text) as unknown
    } catch {
      throw new Error(`agent at ${target.api} answered ${path} with something that is not JSON`)
    }
  }
  throw new Error(apiErrorMessage(target, res.statusCode, text))
}

/**
 * Opens a request and answers the response as it starts (streams are read by the caller).
 * `timeoutMs`: the longest wait for the headers and then between parts of the body.
 */
export async function send (target: ApiTarget, method: Dispatcher.HttpMethod, path: string, body?: unknown, opts: { signal?: AbortSignal, timeoutMs?: number } = {}): Promise<Dispatcher.ResponseData> {
  let res
  try {
    res = await request(`${target.api}${path}`, {
      method,
      headersTimeout: opts.timeoutMs ?? API_TIMEOUT_MS,
      bodyTimeout: opts.timeoutMs ?? API_TIMEOUT_MS,
      headers: authHeaders(target, body !== undefined ? { 'content-type': 'application/json' } : {}),
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      ...(opts.signal != null ? { signal: opts.signal } : {})
    })
  } catch (err) {
    if ((err as Error).name === 'AbortError') throw err
    throw new Error(`cannot reach the agent at ${target.api}: ${(err as Error).message}`, { cause: err })
  }
  if (res.statusCode === 401) {
    await res.body.dump()
    throw new Error(`agent at ${target.api} needs an API key: set LLMESH_API_KEY to one (llmesh apikey add makes one)`)
  }
  return res
}

/** The agent's error message (OpenAI `{error:{message}}` or Ollama `{error}`), else its status. */
export function apiErrorMessage (target: ApiTarget, status: number, text: string): string {
  try {
    const body = JSON.parse(text) as { error?: { message?: unknown } | string }
    const message = typeof body.error === 'string' ? body.error : body.error?.message
    if (typeof message === 'string' && message !== '') return message
  } catch {}
  return `agent at ${target.api} answered ${status}`
}

/** `GET /mesh/view`: the mesh as the agent sees it. */
export async function fetchView (target: ApiTarget): Promise<MeshView> {
  return await apiCall(target, 'GET', '/mesh/view') as MeshView
}
