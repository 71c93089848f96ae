import { fnv1a64 } from './hash.js'

/**
 * Version tag hashed into every key. Bump it (and only then) if the canonical form below
 * changes: routers of different versions would otherwise send one conversation to two hosts.
 */
const KEY_FORMAT = 'llmesh-prefix/1'

/**
 * Characters of a raw completion prompt that make its key: long enough to cover a system
 * preamble and the first user turn, short enough that a growing prompt keeps its key.
 * @default 1024 chars
 */
export const PROMPT_PREFIX_CHARS = 1024

/** An OpenAI / Ollama chat message, as loosely as clients send them. */
export interface ChatMessageLike {
  role?: unknown
  content?: unknown
}

/**
 * The affinity key of a conversation: a stable hash of its FIRST system (or developer)
 * message and its FIRST user message. Every turn of a chat resends those two unchanged, so
 * every turn maps to the same key, and through rendezvous hashing to the same host, whose KV
 * cache still holds the conversation's prefix. Later messages are left out on purpose: they
 * change each turn.
 *
 * Content may be a string or an array of parts (`{type:'text', text}` and others, e.g.
 * images, which count by their JSON with sorted keys). Returns undefined when the
 * conversation has neither a system nor a user message. Two conversations that start with
 * the same system and user message share a key, and a host: they share the prefix too.
 *
 * A string is a raw completion prompt: its first PROMPT_PREFIX_CHARS characters make the key.
 */
export function prefixKey (input: readonly ChatMessageLike[] | string | null | undefined): string | undefined {
  if (input == null) return undefined
  if (typeof input === 'string') {
    if (input === '') return undefined
    return fnv1a64(`${KEY_FORMAT}\nprompt\n${input.slice(0, PROMPT_PREFIX_CHARS)}`)
  }
  if (!Array.isArray(input)) return undefined
  let system: string | undefined
  let user: string | undefined
  for (const m of input) {
    if (m == null || typeof m !== 'object') continue
    if (system == null && (m.role === 'system' || m.role === 'developer')) system = canonical(m.content)
    else if (user == null && m.role === 'user') user = canonical(m.content)
    if (system != null && user != null) break
  }
  if (system == null && user == null) return undefined
  // lengths delimit the fields, so no content can imitate the separators
  const s = system ?? ''
  const u = user ?? ''
  return fnv1a64(`${KEY_FORMAT}\nsystem ${system == null ? -1 : s.length}\n${s}\nuser ${user == null ? -1 : u.length}\n${u}`)
}

/**
 * Characters per token the prompt estimate assumes: about four for English text with the
 * tokenizers of today's chat models. An estimate is enough: it only weighs a cache hit against
 * a queue (see rank's cache affinity).
 * @default 4
 */
export const CHARS_PER_TOKEN = 4

/**
 * The prompt's size in tokens, estimated from the text of an OpenAI body's messages (or its
 * raw prompt): what a host holding the conversation's cache would not evaluate again. Parts
 * that are not text (images) count nothing.
 */
export function estimatePromptTokens (body: { messages?: unknown, prompt?: unknown }): number {
  let chars = 0
  if (typeof body.prompt === 'string') chars += body.prompt.length
  if (Array.isArray(body.messages)) {
    for (const m of body.messages as unknown[]) {
      const content = m != null && typeof m === 'object' ? (m as { content?: unknown }).content : undefined
      if (typeof content === 'string') chars += content.length
      else if (Array.isArray(content)) {
        for (const part of content as unknown[]) {
          const text = part != null && typeof part === 'object' ? (part as { text?: unknown }).text : undefined
          if (typeof text === 'string') chars += text.length
        }
      }
    }
  }
  return Math.ceil(chars / CHARS_PER_TOKEN)
}

function canonical (content: unknown): string {
  if (typeof content === 'string') return content
  if (content == null) return ''
  if (Array.isArray(content)) {
    return content.map((part: unknown) => {
      if (typeof part === 'string') return part
      if (part != null && typeof part === 'object' && (part as { type?: unknown }).type === 'text' && typeof (part as { text?: unknown }).text === 'string') {
        return (part as { text: string }).text
      }
      return stableJson(part)
    }).join('\n')
  }
  return stableJson(content)
}

/** JSON with object keys sorted, so two clients' key order cannot change the hash. */
function stableJson (value: unknown): string {
  if (value == null || typeof value !== 'object') return JSON.stringify(value) ?? 'null'
  if (Array.isArray(value)) return `[${value.map(stableJson).join(',')}]`
  const obj = value as Record<string, unknown>
  return `{${Object.keys(obj).sort().filter((k) => obj[k] !== undefined).map((k) => `${JSON.stringify(k)}:${stableJson(obj[k])}`).join(',')}}`
}
