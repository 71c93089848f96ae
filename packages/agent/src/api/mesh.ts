import type { FastifyInstance } from 'fastify'
import { z } from 'zod'
import type { AgentPort } from './port.js'
import { parseBody } from './request.js'

/** What `POST /admin/pins` and `DELETE /admin/pins` take: a model, and a host (peer id or name) or none for anywhere. */
const PinBodySchema = z.strictObject({
  model: z.string().min(1).max(256),
  host: z.string().min(1).max(128).optional()
})

/**
 * llmesh's own routes: `/health` (open to every client, see the key guard), `/mesh/view`,
 * `/mesh/stats`, `/admin/runners`, `/admin/admission`, `/admin/placements` (this host's, with the
 * steps of each start), `/admin/pins` (GET the pins in effect,
 * POST `{model, host?}` to pin, DELETE the same to unpin).
 */
export function registerMeshApi (app: FastifyInstance, port: AgentPort): void {
  app.get('/health', async () => ({ ok: true, peerId: port.peerId }))
  app.get('/mesh/view', async () => port.view())
  app.get('/mesh/stats', async () => port.meshStats())
  app.get('/admin/runners', async () => ({ runners: port.localRunners(), admission: port.admission() }))
  app.get('/admin/admission', async () => ({ admission: port.admission() }))
  app.get('/admin/placements', async () => ({ placements: port.localPlacements() }))
  app.get('/admin/pins', async () => ({ pins: port.pins() }))
  app.post('/admin/pins', async (req) => {
    const body = parseBody(PinBodySchema, req.body)
    return { pins: port.setPin(body.model, body.host, true) }
  })
  app.delete('/admin/pins', async (req) => {
    const body = parseBody(PinBodySchema, req.body)
    return { pins: port.setPin(body.model, body.host, false) }
  })
}
