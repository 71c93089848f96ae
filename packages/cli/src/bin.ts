#!/usr/bin/env node
// Must come first: libp2p 3 calls Promise.withResolvers, which Node 20 lacks.
import '@llmesh/kit/polyfill'
import { main } from './main.js'

main(process.argv.slice(2)).then((code) => {
  if (code != null) process.exitCode = code
}, (err: unknown) => {
  process.stderr.write(`llmesh: ${err instanceof Error ? err.message : String(err)}\n`)
  process.exit(1)
})
