/** Where a command prints; main's caller (bin.ts: the process's stdout and stderr, a test: buffers). */
export interface CliIo {
  stdout: (text: string) => void
  stderr: (text: string) => void
  /** whether stdout is a terminal (pretty log colours) */
  isTTY?: boolean
}

/** The process's own stdout and stderr. */
export function processIo (): CliIo {
  return {
    stdout: (text) => { process.stdout.write(text) },
    stderr: (text) => { process.stderr.write(text) },
    isTTY: process.stdout.isTTY === true
  }
}
