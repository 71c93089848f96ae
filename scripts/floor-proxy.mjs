#!/usr/bin/env node
// The floor of the request benchmark: the least any Node proxy does for a request, node:http in
// front of an undici pool, no routing, no validation. Its added latency over calling the runner
// directly is what one extra process hop costs on this machine; the agent's own cost is what
// it adds beyond this. Usage: node scripts/floor-proxy.mjs <upstream-url>; prints its URL.
import { createServer } from 'node:http'
import { Pool } from 'undici'

const pool = new Pool(process.argv[2], { connections: 64 })
const server = createServer((req, res) => {
  const parts = []
  req.on('data', (d) => parts.push(d))
  req.on('end', () => {
    pool.request({ path: req.url, method: req.method, headers: { 'content-type': 'application/json' }, body: Buffer.concat(parts) })
      .then(async (r) => {
        const body = Buffer.from(await r.body.arrayBuffer())
        res.writeHead(r.statusCode, { 'content-type': String(r.headers['content-type'] ?? 'application/json'), 'content-length': body.length })
        res.end(body)
      })
      .catch((err) => { res.writeHead(502); res.end(String(err)) })
  })
})
server.listen(0, '127.0.0.1', () => { process.stdout.write(`http://127.0.0.1:${server.address().port}\n`) })
process.on('SIGTERM', () => { server.close(); void pool.close(); process.exit(0) })
