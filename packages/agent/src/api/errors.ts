/**
 * Errors as the API answers them: codes map to HTTP status, bodies take each dialect's shape
 * (OpenAI `{error:{message,type,code,param}}`, Ollama `{error}` on `/api/` routes).
 */
import { LlmeshError, toLlmeshError } from '@llmesh/protocol'

/** OpenAI error body. */
export function openAiError (err: LlmeshError): { error: { message: string, type: string, code: string, param: null } } {
  return { error: { message: err.message, type: err.type, code: err.code.toLowerCase(), param: null } }
}

/** The error body in the shape of the API the URL belongs to: Ollama's routes answer `{error}`, all others OpenAI's. */
export function errorBody (url: string, err: LlmeshError): object {
  return url.startsWith('/api/') ? { error: err.message } : openAiError(err)
}

/** Maps anything thrown in a handler to an LlmeshError and the HTTP status to answer with. */
export function httpError (err: unknown): { e: LlmeshError, status: number } {
  if (err instanceof LlmeshError) return { e: err, status: err.status }
  const raw = err as { statusCode?: number, message?: string }
  if (typeof raw.statusCode === 'number' && raw.statusCode >= 400 && raw.statusCode < 500) {
    // fastify's own 4xx (bad JSON 400, body too large 413, ...) keep their status
    return { e: new LlmeshError('INVALID_REQUEST', raw.message ?? 'invalid request', { cause: err }), status: raw.statusCode }
  }
  const e = toLlmeshError(err)
  return { e, status: e.status }
}
