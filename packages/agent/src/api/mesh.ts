import type { FastifyInstance } from 'fastify'
import type { AgentPort } from './port.js'

/**
 * llmesh's own routes: `/health` (open to every client, see the key guard), `/mesh/view`,
 * `/mesh/stats`, `/admin/runners`, `/admin/admission`.
 */
export function registerMeshApi (app: FastifyInstance, port: AgentPort): void {
  app.get('/health', async () => ({ ok: true, peerId: port.peerId }))
  app.get('/mesh/view', async () => port.view())
  app.get('/mesh/stats', async () => port.meshStats())
  app.get('/admin/runners', async () => ({ runners: port.localRunners(), admission: port.admission() }))
  app.get('/admin/admission', async () => ({ admission: port.admission() }))
}
