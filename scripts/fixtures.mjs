#!/usr/bin/env node
// Makes (or finds, when cached) the test fixtures and prints where they are:
// the llama.cpp build (llama-server, RPC server), the tiny GGUF model, and the headless
// Chromium of the dashboard's test (or why there is none).
import { ensureChromium, ensureLlamaCpp, ensureTinyModel } from '@llmesh/fixtures'

const progress = (line) => { process.stderr.write(`[fixtures] ${line}\n`) }
const build = await ensureLlamaCpp(progress)
const model = await ensureTinyModel(progress)
const chromium = ensureChromium(progress)
process.stdout.write(`${JSON.stringify({ ...build, model, chromium: 'path' in chromium ? chromium.path : null, ...('skip' in chromium ? { chromiumSkipped: chromium.skip } : {}) }, null, 2)}\n`)
