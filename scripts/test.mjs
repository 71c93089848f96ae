#!/usr/bin/env node
// Runs the tests of both lanes (vitest projects `unit` and `e2e`, see vitest.config.ts), or of
// the ones named with `--project`, in one vitest run, then prints the runner's own counts as the
// last line: "N passed, N failed". The fixtures (the llama.cpp build, the tiny model; cached) are
// made by the e2e lane's global setup, so `--project unit` builds nothing.
import { spawn } from 'node:child_process'
import { mkdirSync, readFileSync, rmSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { dirname, join } from 'node:path'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')

const out = join(root, '.test-results')
mkdirSync(out, { recursive: true })
const report = join(out, 'vitest.json')
rmSync(report, { force: true })
const vitest = join(root, 'node_modules', 'vitest', 'vitest.mjs')
const code = await new Promise((resolve) => {
  const child = spawn(process.execPath, [vitest, 'run', '--reporter=default', '--reporter=json', `--outputFile.json=${report}`, ...process.argv.slice(2)], {
    cwd: root,
    stdio: 'inherit'
  })
  child.on('close', (c) => { resolve(c ?? 1) })
})

let passed = 0
let failed = 0
let skipped = 0
try {
  const r = JSON.parse(readFileSync(report, 'utf8'))
  passed = r.numPassedTests
  failed = r.numFailedTests
  skipped = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0)
  // a file that failed to load has no failed test, but is a failure
  if (failed === 0 && code !== 0) failed = r.numFailedTestSuites || 1
} catch {
  failed = 1
}
process.stdout.write(`${passed} passed, ${failed} failed${skipped > 0 ? `, ${skipped} skipped` : ''}\n`)
process.exitCode = code !== 0 || failed > 0 || passed === 0 ? 1 : 0
