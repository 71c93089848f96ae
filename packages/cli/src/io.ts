import type { Readable } from 'node:stream'

/** Where a command prints; main's caller (bin.ts: the process's stdout and stderr, a test: buffers). */
export interface CliIo {
  stdout: (text: string) => void
  stderr: (text: string) => void
  /** whether stdout is a terminal (colour, relative times, tables redrawn in place, pretty log colours) */
  isTTY?: boolean
  /** false: no colour even on a terminal ($NO_COLOR) */
  color?: boolean
  /** what `llmesh chat` reads its lines from; absent: nothing to read */
  stdin?: Readable
  /** calls `fn` on Ctrl-C (SIGINT) and answers the function that stops listening; absent: Ctrl-C is the process's default */
  onInterrupt?: (fn: () => void) => () => void
}

/** The process's own stdout, stderr, stdin and SIGINT. */
export function processIo (): CliIo {
  return {
    stdout: (text) => { process.stdout.write(text) },
    stderr: (text) => { process.stderr.write(text) },
    isTTY: process.stdout.isTTY === true,
    color: process.env['NO_COLOR'] == null || process.env['NO_COLOR'] === '',
    stdin: process.stdin,
    onInterrupt: (fn) => {
      process.on('SIGINT', fn)
      return () => { process.off('SIGINT', fn) }
    }
  }
}
