/**
 * What every long-lived part of an agent is given instead of reaching for globals: time,
 * randomness and a logger. Built once at the agent root and passed down (as js-libp2p passes its
 * components), so that a test drives time with a fake clock and randomness with a seed, and a
 * deadline is computed and checked on one clock.
 */

/** An opaque timer, as `Clock.setTimeout` returns it. */
export type TimerHandle = { unref?: () => unknown } | number

export interface Clock {
  /** milliseconds since the epoch, as Date.now */
  now: () => number
  /** runs `fn` after `ms`; a real clock's timer does not keep the process alive (unref'd) */
  setTimeout: (fn: () => void, ms: number) => TimerHandle
  clearTimeout: (timer: TimerHandle | undefined) => void
}

/** A log call as pino takes it: an object of fields and a message, or a message alone. */
export interface LogFn {
  (obj: object, msg?: string): void
  (msg: string): void
}

/** The part of a pino logger the packages use. */
export interface Logger {
  debug: LogFn
  info: LogFn
  warn: LogFn
  error: LogFn
  child: (bindings: Record<string, unknown>) => Logger
}

export interface Components {
  clock: Clock
  /** floats in [0, 1), as Math.random */
  random: () => number
  logger: Logger
}
