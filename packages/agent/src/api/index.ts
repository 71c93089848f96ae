/**
 * The agent's HTTP API: OpenAI's and Ollama's APIs over the mesh, and llmesh's own routes.
 *
 * It sees the agent only through `AgentPort` (infer, request tracking, view, stats, runners,
 * admission, API keys): `buildHttpServer(init, port, logger)` builds the fastify server, the
 * agent listens and closes it. Inside, one module per job:
 * - `guards`: Host/Origin (loopback APIs), API keys, JSON depth, draining refused bodies;
 *   `api-keys`: the keys file and the store the guard asks
 * - `headers`: the `x-llmesh-*` headers, read and written
 * - `request`: body validation, and a request handed to the port's `infer`
 * - `respond`: routed responses written to the client (whole or streamed, with backpressure)
 * - `errors`: codes to status and each dialect's error body
 * - `openai`, `ollama`, `mesh`: the routes; the OpenAI <-> Ollama translation is the runners'
 *   dialect codec, shared with the Ollama runner adapter
 */
export { buildHttpServer, type HttpApiInit } from './server.js'
export type { AgentPort, ApiKeys, LocalPlacement, MeshView, StartTimings, ViewNode, ViewPlacement } from './port.js'
export { ApiKeyStore, ApiKeyError, API_KEYS_FILE, addApiKey, apiKeysPath, listApiKeys, revokeApiKey, type ApiKeyInfo } from './api-keys.js'
