import { readFileSync } from 'node:fs'
import ts from 'typescript'
import { z } from 'zod'
import { AgentConfigSchema } from '@llmesh/agent'

/**
 * docs/CONFIG.md, generated from the agent's config schema: every key with its type, default,
 * unit and meaning. Types, constraints and defaults come from the schema itself
 * (`z.toJSONSchema`), so they cannot drift. Meanings are the schemas' doc comments, read from
 * the sources with the TypeScript parser: zod keeps no comments at run time, and copying them
 * into `.describe()` calls would keep each text twice in every package that owns a part of the
 * schema. A default the schema computes on the host (its name, its data dir) is shown as the
 * doc comment's `@default` words instead, so the page is the same on every machine.
 */

/** The files whose schemas make up the agent's config, from the repository root. */
export const CONFIG_SOURCES = [
  'packages/agent/src/config.ts',
  'packages/mesh/src/config.ts',
  'packages/runners/src/config.ts',
  'packages/scheduler/src/config.ts'
] as const

/** The repository root, from this file (src/ or dist/ of packages/cli). */
const ROOT = new URL('../../../', import.meta.url)

interface JsonSchema {
  type?: string
  properties?: Record<string, JsonSchema>
  required?: string[]
  items?: JsonSchema
  anyOf?: JsonSchema[]
  enum?: unknown[]
  const?: unknown
  default?: unknown
  minimum?: number
  maximum?: number
  exclusiveMinimum?: number
  minLength?: number
  maxLength?: number
  maxItems?: number
  pattern?: string
  format?: string
}

/** A key's doc comment and, for an object or a list of objects, its fields'. */
interface Described {
  comment?: string
  /** the doc comment of the schema the key refers to (`p2p: P2pConfigSchema`) */
  schemaComment?: string
  fields?: Map<string, Described>
}

/** Doc comments of every schema field in the sources, nested as the schemas nest. */
export function readDocComments (read: (file: string) => string = (f) => readFileSync(new URL(f, ROOT), 'utf8')): Described {
  const decls = new Map<string, { init: ts.Expression, comment?: string }>()
  for (const file of CONFIG_SOURCES) {
    const source = ts.createSourceFile(file, read(file), ts.ScriptTarget.Latest, true)
    for (const stmt of source.statements) {
      if (!ts.isVariableStatement(stmt)) continue
      for (const d of stmt.declarationList.declarations) {
        if (ts.isIdentifier(d.name) && d.initializer != null) {
          const comment = docOf(stmt)
          decls.set(d.name.text, { init: d.initializer, ...(comment != null ? { comment } : {}) })
        }
      }
    }
  }
  const describe = (expr: ts.Expression, seen: Set<string>): Pick<Described, 'fields' | 'schemaComment'> => {
    let e: ts.Expression = expr
    for (;;) {
      if (ts.isIdentifier(e)) {
        const decl = decls.get(e.text)
        if (decl == null || seen.has(e.text)) return {}
        const inner = describe(decl.init, new Set([...seen, e.text]))
        return { ...inner, ...(decl.comment != null ? { schemaComment: decl.comment } : {}) }
      }
      if (!ts.isCallExpression(e)) return {}
      const callee = e.expression
      const name = ts.isPropertyAccessExpression(callee) ? callee.name.text : ''
      const arg = e.arguments[0]
      if ((name === 'strictObject' || name === 'object') && arg != null && ts.isObjectLiteralExpression(arg)) {
        const fields = new Map<string, Described>()
        for (const p of arg.properties) {
          if (!ts.isPropertyAssignment(p) || !(ts.isIdentifier(p.name) || ts.isStringLiteral(p.name))) continue
          const comment = docOf(p)
          fields.set(p.name.text, { ...describe(p.initializer, seen), ...(comment != null ? { comment } : {}) })
        }
        return { fields }
      }
      if ((name === 'array' || name === 'union') && arg != null) {
        // a list's element, or a union's object member
        const members = ts.isArrayLiteralExpression(arg) ? [...arg.elements] : [arg]
        for (const m of members) {
          const inner = describe(m, seen)
          if (inner.fields != null) return inner
        }
        return {}
      }
      if (!ts.isPropertyAccessExpression(callee)) return {}
      e = callee.expression
    }
  }
  const agent = decls.get('AgentConfigSchema')
  if (agent == null) throw new Error('AgentConfigSchema not found in packages/agent/src/config.ts')
  return { ...describe(agent.init, new Set()), ...(agent.comment != null ? { comment: agent.comment } : {}) }
}

/** The JSDoc text of a node (tags included as written), on one line. */
function docOf (node: ts.Node): string | undefined {
  const text = node.getSourceFile().getFullText()
  const ranges = ts.getLeadingCommentRanges(text, node.getFullStart()) ?? []
  const doc = ranges.filter((r) => text.startsWith('/**', r.pos)).at(-1)
  if (doc == null) return undefined
  return text.slice(doc.pos + 3, doc.end - 2).split('\n').map((l) => l.replace(/^\s*\* ?/, '').trim()).join(' ').replace(/\s+/g, ' ').trim()
}

/**
 * A comment without its `@default …` (the table has a column for it): a trailing one, and
 * those in parentheses inside a section's text (`(@default 64)`).
 */
function meaningOf (comment: string | undefined): string {
  if (comment == null) return ''
  return comment.replace(/\s*\(@default [^)]*\)/g, '').replace(/\s*@default\b.*$/s, '').trim()
}

/** The `@default …` words of a comment, without the trailing period. */
function defaultWordsOf (comment: string | undefined): string | undefined {
  const m = /@default\s+(.+)$/s.exec(comment ?? '')
  return m?.[1]?.trim().replace(/\.$/, '')
}

/** The unit of a key: its name's suffix, else the unit its comment names after a comma. */
function unitOf (key: string, comment: string | undefined): string {
  if (/Ms$/.test(key)) return 'ms'
  if (/Bytes$/.test(key)) return 'bytes'
  const m = /,\s*(bytes|tokens|ms|seconds)\b/.exec(meaningOf(comment))
  return m?.[1] ?? ''
}

const MAX_SAFE = Number.MAX_SAFE_INTEGER

function typeOf (s: JsonSchema): string {
  if (s.anyOf != null) return s.anyOf.map(typeOf).join(' or ')
  if (s.const !== undefined) return `\`${JSON.stringify(s.const)}\``
  if (s.enum != null) return `one of ${s.enum.map((v) => `\`${String(v)}\``).join(', ')}`
  switch (s.type) {
    case 'integer':
    case 'number': {
      const bounds = [
        s.exclusiveMinimum != null ? `> ${s.exclusiveMinimum}` : s.minimum != null && s.minimum > -MAX_SAFE ? `≥ ${s.minimum}` : '',
        s.maximum != null && s.maximum < MAX_SAFE ? `≤ ${s.maximum}` : ''
      ].filter((b) => b !== '')
      return `${s.type}${bounds.length > 0 ? ` ${bounds.join(', ')}` : ''}`
    }
    case 'string': {
      const parts = [
        s.format != null ? s.format : '',
        s.minLength != null && s.minLength > 0 ? (s.maxLength != null ? `${s.minLength}–${s.maxLength} chars` : 'not empty') : s.maxLength != null ? `≤ ${s.maxLength} chars` : '',
        s.pattern != null ? `matching \`${s.pattern}\`` : ''
      ].filter((p) => p !== '')
      return `string${parts.length > 0 ? ` (${parts.join(', ')})` : ''}`
    }
    case 'array': return `list of ${s.items != null ? typeOf(s.items) : 'values'}${s.maxItems != null ? ` (≤ ${s.maxItems})` : ''}`
    case 'object': return 'object'
    default: return s.type ?? 'any'
  }
}

/** The object schema inside a key (itself, a list's element, a union's object member). */
function objectIn (s: JsonSchema): { schema: JsonSchema, list: boolean } | undefined {
  if (s.type === 'object' && s.properties != null) return { schema: s, list: false }
  if (s.type === 'array' && s.items?.type === 'object' && s.items.properties != null) return { schema: s.items, list: true }
  const member = s.anyOf?.find((m) => m.type === 'object' && m.properties != null)
  return member != null ? { schema: member, list: false } : undefined
}

function defaultOf (s: JsonSchema, comment: string | undefined, required: boolean): string {
  const words = defaultWordsOf(comment)
  if (s.default !== undefined) {
    // a string the comment does not state was computed on this host (its name, its home): the comment's words instead
    if (typeof s.default === 'string' && words != null && !words.includes(s.default)) return words
    return `\`${JSON.stringify(s.default)}\``
  }
  if (words != null) return words
  return required ? '**required**' : 'unset'
}

function cell (text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\n/g, ' ')
}

/** The whole of docs/CONFIG.md. */
export function configDoc (described: Described = readDocComments()): string {
  const json = z.toJSONSchema(AgentConfigSchema, { io: 'input', unrepresentable: 'any' }) as JsonSchema
  const sections: string[] = []
  const section = (title: string, intro: string, schema: JsonSchema, fields: Map<string, Described> | undefined, prefix: string): void => {
    const rows = ['| Key | Type | Default | Unit | Meaning |', '|---|---|---|---|---|']
    const nested: Array<() => void> = []
    for (const [key, s] of Object.entries(schema.properties ?? {})) {
      const d = fields?.get(key)
      const path = `${prefix}${key}`
      const obj = objectIn(s)
      // an object's row: the owning package's summary (its section has the whole text)
      const meaning = obj != null ? meaningOf(d?.schemaComment) || meaningOf(d?.comment) : meaningOf(d?.comment) || meaningOf(d?.schemaComment)
      const link = obj != null ? ` See [${path}${obj.list ? '[]' : ''}](#${anchor(`${path}${obj.list ? '[]' : ''}`)}).` : ''
      rows.push(`| \`${path}\` | ${cell(typeOf(s))} | ${cell(obj != null && !obj.list && s.anyOf == null && s.default !== undefined ? 'see below' : defaultOf(s, d?.comment, schema.required?.includes(key) === true && s.default === undefined))} | ${unitOf(key, d?.comment)} | ${cell(`${meaning}${link}`.trim())} |`)
      if (obj != null) {
        const name = `${path}${obj.list ? '[]' : ''}`
        const intro = meaningOf(d?.comment ?? d?.schemaComment)
        nested.push(() => { section(name, intro, obj.schema, d?.fields, `${name}.`) })
      }
    }
    sections.push(`## \`${title}\`\n\n${intro !== '' ? `${intro}\n\n` : ''}${rows.join('\n')}`)
    for (const n of nested) n()
  }
  section('(top level)', meaningOf(described.comment), json, described.fields, '')
  sections[0] = sections[0]!.replace('## `(top level)`', '## Top level')
  return [
    '# llmesh configuration',
    '',
    '<!-- generated by `node scripts/config-doc.mjs` from the agent\'s config schema and its doc comments; do not edit by hand -->',
    '',
    '`llmesh up --config FILE` reads a JSON object of these keys; command-line flags override it',
    '(`llmesh help`). Every key is optional. Unknown keys are refused, and each bad value is',
    'reported on one line naming its key: `llmesh config check FILE` gives that report without',
    'starting anything.',
    '',
    '```json',
    '{ "name": "gpu1", "models": [{ "name": "llama3", "path": "/models/llama-3-8b.Q4_K_M.gguf" }], "llamaServer": { "slots": 4 } }',
    '```',
    '',
    sections.join('\n\n'),
    ''
  ].join('\n')
}

/** GitHub's heading anchor for a code-span heading. */
function anchor (title: string): string {
  return title.toLowerCase().replace(/[^\w\- ]/g, '').replace(/ /g, '-')
}
