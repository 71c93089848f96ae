import { createServer } from 'node:net'
import { LlmeshError } from '@llmesh/protocol'

/**
 * Asks the OS for a free TCP port on `host`. Runners always get an allocated port, never a
 * fixed default, so two runners and the agent never clash. The port is released before the
 * runner binds it: see PortPicker for the two races that leaves.
 */
export async function freePort (host = '127.0.0.1'): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.once('error', reject)
    server.listen(0, host, () => {
      const addr = server.address()
      const port = typeof addr === 'object' && addr != null ? addr.port : 0
      server.close(() => { port > 0 ? resolve(port) : reject(new Error('no port allocated')) })
    })
  })
}

/** Ports asked of the OS per pick before giving up on finding one not held. */
const PICK_TRIES = 16

/**
 * The ports of one host's runners, from the pick to the runner's end. A port from `freePort`
 * is free when picked and released before the runner binds it, so two runners starting at once
 * could be handed the same one: a picker never hands out a port it holds (one picker per
 * RunnerManager, shared by its runners). A port taken by another program between the pick and
 * the bind is not the picker's to prevent: the runner sees its bind fail and picks again.
 */
export class PortPicker {
  private readonly held = new Set<number>()

  /** A free port on `host` that no runner of this picker holds; held until `release`. */
  async pick (host = '127.0.0.1'): Promise<number> {
    for (let i = 0; i < PICK_TRIES; i++) {
      const port = await freePort(host)
      if (this.held.has(port)) continue
      this.held.add(port)
      return port
    }
    throw new LlmeshError('RUNNER_FAILED', `no free port on ${host} that no runner holds after ${PICK_TRIES} tries`)
  }

  /** The runner is done with `port` (stopped, exited, or its bind failed). */
  release (port: number): void {
    this.held.delete(port)
  }

  /** Ports held now. */
  get size (): number { return this.held.size }
}
