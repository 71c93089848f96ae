import { LlmeshError } from '@llmesh/protocol'

/**
 * The command line or its config file is wrong: nothing was started. `main` prints the message
 * (one line per problem, each naming the flag or the config key and what is expected) and
 * returns EXIT_USAGE.
 */
export class UsageError extends LlmeshError {
  override name = 'UsageError'

  constructor (message: string, options?: { cause?: unknown }) {
    super('INVALID_CONFIG', message, options)
  }
}

/** Exit code of a usage error: a bad command, flag, flag value or config file. */
export const EXIT_USAGE = 2
/** Exit code of a failure at run time (an agent not reachable, a port taken, a file not writable). */
export const EXIT_FAILURE = 1
