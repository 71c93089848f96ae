/**
 * C0 and C1 control characters, DEL, and the Unicode bidirectional controls (which can make a
 * line read differently from what it holds): what a peer-supplied string must not carry to a
 * terminal as it is.
 */
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/gu

/** What JSON.stringify leaves unescaped in strings of UNSAFE (its own line breaks are layout). */
const UNSAFE_IN_JSON = /[\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/gu

/**
 * A string from the mesh (a peer's name, models, addresses) made safe to print on a terminal:
 * each unsafe character is shown escaped (`\x1b`, `\u202e`), so a peer can neither move the
 * cursor, recolour or clear the screen, nor reorder what is shown.
 */
export function terminalSafe (value: string): string {
  return value.replace(UNSAFE, (c) => {
    const n = c.codePointAt(0)!
    return n <= 0xff ? `\\x${n.toString(16).padStart(2, '0')}` : `\\u${n.toString(16).padStart(4, '0')}`
  })
}

/**
 * JSON for a terminal: JSON.stringify escapes C0 controls but leaves DEL, C1 controls and
 * bidirectional controls as they are; these are written as `\uXXXX` escapes (still the same JSON).
 */
export function terminalSafeJson (value: unknown): string {
  return JSON.stringify(value, null, 2).replace(UNSAFE_IN_JSON, (c) => `\\u${c.codePointAt(0)!.toString(16).padStart(4, '0')}`)
}

/** Text from the mesh meant as text (a model's answer): like `terminalSafe`, but line breaks and tabs stay. */
export function terminalSafeText (value: string): string {
  return value.split(/(\n|\t)/).map((part) => part === '\n' || part === '\t' ? part : terminalSafe(part)).join('')
}

/** `terminalSafeJson` on one line: JSON Lines, one value a line. */
export function terminalSafeJsonLine (value: unknown): string {
  return JSON.stringify(value).replace(UNSAFE_IN_JSON, (c) => `\\u${c.codePointAt(0)!.toString(16).padStart(4, '0')}`)
}
