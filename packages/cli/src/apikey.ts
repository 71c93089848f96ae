import { addApiKey, listApiKeys, parseConfig, revokeApiKey, type ApiKeyInfo } from '@llmesh/agent'
import { terminalSafe } from './terminal.js'

export interface ApiKeyFlags {
  'data-dir'?: string
  name?: string
}

function dataDirOf (flags: ApiKeyFlags): string {
  return flags['data-dir'] ?? parseConfig({}).dataDir
}

/** `llmesh apikey add`: the new key (shown once: only its hash is stored). */
export async function apikeyAdd (flags: ApiKeyFlags): Promise<{ key: string, info: ApiKeyInfo, dataDir: string }> {
  const dataDir = dataDirOf(flags)
  return { ...await addApiKey(dataDir, flags.name), dataDir }
}

/** `llmesh apikey list`: names, ids and creation times, never a key. */
export async function apikeyList (flags: ApiKeyFlags): Promise<ApiKeyInfo[]> {
  return await listApiKeys(dataDirOf(flags))
}

/** `llmesh apikey revoke ID|NAME`. */
export async function apikeyRevoke (flags: ApiKeyFlags, idOrName: string): Promise<ApiKeyInfo> {
  return await revokeApiKey(dataDirOf(flags), idOrName)
}

export function formatApiKeyAdded (added: { key: string, info: ApiKeyInfo, dataDir: string }): string {
  return [
    `API key '${added.info.name}' (id ${added.info.id}) added to ${added.dataDir}; it is shown only now:`,
    '',
    `  ${added.key}`,
    '',
    'clients send it as the header  Authorization: Bearer <key>  (OpenAI clients: apiKey)'
  ].join('\n')
}

export function formatApiKeys (keys: ApiKeyInfo[]): string {
  if (keys.length === 0) return 'no API keys (llmesh apikey add creates one)'
  const rows = [['ID', 'NAME', 'CREATED'], ...keys.map((k) => [k.id, terminalSafe(k.name), terminalSafe(k.createdAt)])]
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)))
  return rows.map((r) => r.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join('  ').trimEnd()).join('\n')
}
