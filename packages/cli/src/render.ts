import { terminalSafe } from './terminal.js'

/**
 * How a table is printed. `tty`: stdout is a terminal, so colour (unless turned off) and
 * relative times ("3m ago"); otherwise plain, stable columns that `cut` and `awk` read.
 */
export interface Style {
  tty: boolean
  color: boolean
}

/** Plain: what scripts and tests read. */
export const PLAIN: Style = Object.freeze({ tty: false, color: false })

/** A cell's colour on a terminal: good (alive, ready), warn (suspect, loading), bad (dead, failed), dim (absent). */
export type Tone = 'good' | 'warn' | 'bad' | 'dim'

/** A table cell: its text, and optionally a tone for a terminal. */
export type Cell = string | { text: string, tone?: Tone }

const SGR: Record<Tone | 'head', [string, string]> = {
  good: ['\u001b[32m', '\u001b[39m'],
  warn: ['\u001b[33m', '\u001b[39m'],
  bad: ['\u001b[31m', '\u001b[39m'],
  dim: ['\u001b[2m', '\u001b[22m'],
  head: ['\u001b[1m', '\u001b[22m']
}

/**
 * Rows as columns two blanks apart, the first row the header. Every cell goes through
 * `terminalSafe` (cells hold peers' names, models, errors); colour, when the style has it, is
 * added after padding so that columns stay aligned.
 */
export function table (rows: Cell[][], style: Style = PLAIN): string {
  const texts = rows.map((r) => r.map((c) => terminalSafe(typeof c === 'string' ? c : c.text)))
  const widths = texts[0]!.map((_, i) => Math.max(...texts.map((r) => (r[i] ?? '').length)))
  return texts.map((r, ri) => r.map((text, i) => {
    const padded = i === r.length - 1 ? text : text.padEnd(widths[i] ?? 0)
    if (!style.color) return padded
    const cell = rows[ri]![i]!
    const tone = ri === 0 ? 'head' : typeof cell === 'string' ? undefined : cell.tone
    if (tone == null) return padded
    const [on, off] = SGR[tone]
    // colour the text only, not its padding
    return `${on}${text}${off}${padded.slice(text.length)}`
  }).join('  ').trimEnd()).join('\n')
}

/** The tone of a membership, placement or runner state. */
export function stateTone (state: string): Tone | undefined {
  if (['alive', 'ready', 'connected', 'self'].includes(state)) return 'good'
  if (['suspect', 'loading', 'starting', 'planned', 'busy', 'evicting', 'unknown'].includes(state)) return 'warn'
  if (['dead', 'failed', 'unreachable', 'left', 'stopped'].includes(state)) return 'bad'
  return undefined
}

/** A cell coloured by its state. */
export function stateCell (state: string): Cell {
  const tone = stateTone(state)
  return tone == null ? state : { text: state, tone }
}

/** '-' dimmed: nothing known. */
export const NONE: Cell = { text: '-', tone: 'dim' }

/**
 * An age, ms: on a terminal the largest unit ("3s ago", "4m ago", "2h ago", "5d ago"); plain,
 * seconds with one decimal ("2.1s ago"), the same unit on every row.
 */
export function age (ms: number, style: Style): string {
  if (!style.tty) return `${(ms / 1000).toFixed(1)}s ago`
  const s = Math.floor(ms / 1000)
  if (s < 60) return `${s}s ago`
  if (s < 3600) return `${Math.floor(s / 60)}m ago`
  if (s < 86_400) return `${Math.floor(s / 3600)}h ago`
  return `${Math.floor(s / 86_400)}d ago`
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB']

/** Bytes in binary units, one decimal, no blank ("1.5GiB"): one word for `awk`. */
export function bytes (n: number): string {
  let v = n
  let u = 0
  while (v >= 1024 && u < UNITS.length - 1) { v /= 1024; u++ }
  return u === 0 ? `${v}B` : `${v.toFixed(1)}${UNITS[u]}`
}

/** A count with SI suffix ("7.6B" parameters, "32K" tokens of context). */
export function count (n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)}B`
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`
  if (n >= 1024 && n % 1024 === 0) return `${n / 1024}K`
  if (n >= 1e3) return `${Math.round(n / 1e3)}K`
  return String(n)
}
