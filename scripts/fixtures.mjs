#!/usr/bin/env node
// Makes (or finds, when cached) the test fixtures and prints where they are:
// the llama.cpp build (llama-server, RPC server) and the tiny GGUF model.
import { ensureLlamaCpp, ensureTinyModel } from '@llmesh/fixtures'

const progress = (line) => { process.stderr.write(`[fixtures] ${line}\n`) }
const build = await ensureLlamaCpp(progress)
const model = await ensureTinyModel(progress)
process.stdout.write(`${JSON.stringify({ ...build, model }, null, 2)}\n`)
