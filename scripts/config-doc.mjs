#!/usr/bin/env node
// Writes docs/CONFIG.md from the agent's config schema and its doc comments (packages/cli/src/config-doc.ts).
// --check: writes nothing, exits 1 when docs/CONFIG.md differs from what the schema gives.
import { readFile, writeFile } from 'node:fs/promises'

const target = new URL('../docs/CONFIG.md', import.meta.url)
let configDoc
try {
  ({ configDoc } = await import('../packages/cli/dist/config-doc.js'))
} catch (err) {
  process.stderr.write(`config-doc: cannot load the built CLI (${err.message}); run 'npx tsc -b' first\n`)
  process.exit(1)
}
const text = configDoc()
if (process.argv.includes('--check')) {
  const current = await readFile(target, 'utf8').catch(() => '')
  if (current !== text) {
    process.stderr.write('docs/CONFIG.md differs from the config schema: run node scripts/config-doc.mjs\n')
    process.exit(1)
  }
  process.stdout.write('docs/CONFIG.md is up to date\n')
} else {
  await writeFile(target, text)
  process.stdout.write('wrote docs/CONFIG.md\n')
}
