import { runnerServes } from '@llmesh/protocol'
import type { MeshView } from './port.js'

/** A model the mesh serves or has on disk, as the model lists of both APIs show it. */
export interface MeshModel {
  name: string
  /** the newest start time of the hosts that have it, ms */
  created: number
}

/** Models the reachable mesh serves or has on disk, by name. */
export function meshModels (view: MeshView): MeshModel[] {
  const seen = new Map<string, MeshModel>()
  for (const node of view.nodes) {
    if (!node.connected || node.state === 'dead' || node.state === 'left') continue
    for (const name of [...node.models.map((m) => m.name), ...node.runners.filter(runnerServes).map((r) => r.model)]) {
      if (!seen.has(name)) seen.set(name, { name, created: node.startedAt })
    }
  }
  return [...seen.values()].sort((a, b) => a.name.localeCompare(b.name))
}
