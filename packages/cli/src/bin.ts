#!/usr/bin/env node
// Must come first: libp2p 3 calls Promise.withResolvers, which Node 20 lacks.
import '@llmesh/kit/polyfill'
import { main } from './main.js'

main(process.argv.slice(2)).then((code) => {
  // undefined: 'up' runs until a signal. A failure exits at once: an agent that failed to start
  // may leave timers or sockets that would keep the process alive.
  if (code == null) return
  if (code !== 0) process.exit(code)
  process.exitCode = 0
}, (err: unknown) => {
  process.stderr.write(`llmesh: ${err instanceof Error ? err.message : String(err)}\n`)
  process.exit(1)
})
