import { parseArgs } from 'node:util'
import { resolveUpConfig } from './commands.js'
import type { CliIo } from './io.js'
import { terminalSafeJson } from './terminal.js'
import { EXIT_FAILURE, UsageError } from './usage-error.js'

/** `llmesh config check FILE [--json]`: exit 0 valid, 1 not (the report on stderr, or the JSON on stdout). */
export async function configCommand (args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs({ args, strict: true, allowPositionals: true, options: { json: { type: 'boolean' } } })
  const [sub, file, ...more] = positionals
  if (sub !== 'check' || file == null || more.length > 0) throw new UsageError("expected 'config check FILE'")
  const result = await checkConfig(file)
  if (values.json === true) io.stdout(`${terminalSafeJson(result)}\n`)
  else if (result.valid) io.stdout(`${file}: valid\n`)
  else io.stderr(`${result.problems.join('\n')}\n`)
  return result.valid ? 0 : EXIT_FAILURE
}

/**
 * `llmesh config check FILE`: the file through the function `llmesh up --config FILE` uses,
 * so the report is the one `up` would give. Problems as lines (a single one, or 'invalid
 * config (FILE):' and one indented line per problem).
 */
export async function checkConfig (file: string): Promise<{ file: string, valid: boolean, problems: string[] }> {
  try {
    await resolveUpConfig({ config: file }, { dryRun: true })
    return { file, valid: true, problems: [] }
  } catch (err) {
    if (!(err instanceof UsageError)) throw err
    return { file, valid: false, problems: err.message.split('\n') }
  }
}
