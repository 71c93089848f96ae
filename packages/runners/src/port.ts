import { createServer } from 'node:net'

/**
 * Asks the OS for a free TCP port on `host`. Runners always get an allocated port, never a
 * fixed default, so two runners and the agent never clash. The port is released before the
 * runner binds it; a runner that loses that race fails to start and is started again.
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
