import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { mkdir, open, readFile, stat, unlink } from 'node:fs/promises'
import { writeFileDurable } from '@llmesh/mesh'
import { dirname, join } from 'node:path'
import { z } from 'zod'
import { API_KEYS_RECHECK_MS } from '../constants.js'

/** File in the data dir that holds the API keys' hashes (never the keys). */
export const API_KEYS_FILE = 'apikeys.json'

/** What every key starts with, so secret scanners and people can tell one. */
const KEY_PREFIX = 'llmesh_'

/** Random bytes in a key: 256 bits, so a fast hash is enough to store it (see ApiKeyStore). */
const KEY_BYTES = 32

const ApiKeyRecordSchema = z.strictObject({
  /** short id: the first 8 hex digits of the key's SHA-256 */
  id: z.string().regex(/^[0-9a-f]{8}$/),
  name: z.string().max(128),
  /** ISO time */
  createdAt: z.string(),
  /** SHA-256 of the whole key, hex */
  sha256: z.string().regex(/^[0-9a-f]{64}$/)
})
export type ApiKeyRecord = z.infer<typeof ApiKeyRecordSchema>

const ApiKeysFileSchema = z.strictObject({
  version: z.literal(1),
  keys: z.array(ApiKeyRecordSchema)
})

/** A key as `llmesh apikey list` shows it: never the key, nor its hash. */
export interface ApiKeyInfo { id: string, name: string, createdAt: string }

export class ApiKeyError extends Error {
  override name = 'ApiKeyError'
}

export function apiKeysPath (dataDir: string): string {
  return join(dataDir, API_KEYS_FILE)
}

function sha256 (text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest()
}

/** The keys' records in a file; none when the file does not exist. Throws ApiKeyError when it does not parse. */
export async function readApiKeys (file: string): Promise<ApiKeyRecord[]> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw new ApiKeyError(`cannot read ${file}: ${(err as Error).message}`)
  }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    throw new ApiKeyError(`${file} is not valid JSON: fix it or remove it and add the keys again (llmesh apikey add)`)
  }
  const parsed = ApiKeysFileSchema.safeParse(json)
  if (!parsed.success) {
    const i = parsed.error.issues[0]
    throw new ApiKeyError(`${file} is not an API keys file (${i != null ? `${i.path.join('.')}: ${i.message}` : 'bad shape'})`)
  }
  return parsed.data.keys
}

/** Writes the records durably (writeFileDurable: unique temp file 0600, fsync, rename, fsync of the folder). */
async function writeApiKeys (file: string, keys: ApiKeyRecord[]): Promise<void> {
  await mkdir(dirname(file), { recursive: true, mode: 0o700 })
  await writeFileDurable(file, `${JSON.stringify({ version: 1, keys }, null, 2)}\n`)
}

/** How long a writer waits for another's lock on the keys file. @default 5000 ms */
const LOCK_WAIT_MS = 5000
/** A lock older than this is left over from a writer that died, and is taken over. @default 30000 ms */
const LOCK_STALE_MS = 30_000

/**
 * Runs a read-modify-write of the keys file under a lock file (`<file>.lock`, created
 * exclusively), so two `llmesh apikey` commands at once cannot lose each other's change.
 */
async function withLock<T> (file: string, fn: () => Promise<T>): Promise<T> {
  const lock = `${file}.lock`
  await mkdir(dirname(file), { recursive: true, mode: 0o700 })
  const deadline = Date.now() + LOCK_WAIT_MS
  for (;;) {
    try {
      await (await open(lock, 'wx', 0o600)).close()
      break
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      const age = await stat(lock).then((s) => Date.now() - s.mtimeMs, () => 0)
      if (age > LOCK_STALE_MS) await unlink(lock).catch(() => {})
      else if (Date.now() > deadline) throw new ApiKeyError(`${lock} is held by another llmesh apikey command; try again (remove the file if none runs)`)
      else await new Promise((resolve) => setTimeout(resolve, 20))
    }
  }
  try {
    return await fn()
  } finally {
    await unlink(lock).catch(() => {})
  }
}

/** `llmesh apikey add`: makes a key, stores its hash, returns the key (shown once, never stored). */
export async function addApiKey (dataDir: string, name?: string): Promise<{ key: string, info: ApiKeyInfo }> {
  const file = apiKeysPath(dataDir)
  return await withLock(file, async () => await addLocked(file, name))
}

async function addLocked (file: string, name: string | undefined): Promise<{ key: string, info: ApiKeyInfo }> {
  const keys = await readApiKeys(file)
  if (name != null && (name === '' || name.length > 128 || /[\p{Cc}]/u.test(name))) {
    throw new ApiKeyError('a key name is 1 to 128 characters, no control characters')
  }
  if (name != null && keys.some((k) => k.name === name)) throw new ApiKeyError(`a key named '${name}' exists already (llmesh apikey list)`)
  const key = KEY_PREFIX + randomBytes(KEY_BYTES).toString('base64url')
  const hash = sha256(key).toString('hex')
  const record: ApiKeyRecord = { id: hash.slice(0, 8), name: name ?? `key-${hash.slice(0, 8)}`, createdAt: new Date().toISOString(), sha256: hash }
  await writeApiKeys(file, [...keys, record])
  return { key, info: infoOf(record) }
}

/** `llmesh apikey list`. */
export async function listApiKeys (dataDir: string): Promise<ApiKeyInfo[]> {
  return (await readApiKeys(apiKeysPath(dataDir))).map(infoOf)
}

/** `llmesh apikey revoke ID|NAME`: removes one key; an agent stops taking it within API_KEYS_RECHECK_MS. */
export async function revokeApiKey (dataDir: string, idOrName: string): Promise<ApiKeyInfo> {
  const file = apiKeysPath(dataDir)
  return await withLock(file, async () => await revokeLocked(file, idOrName))
}

async function revokeLocked (file: string, idOrName: string): Promise<ApiKeyInfo> {
  const keys = await readApiKeys(file)
  const hits = keys.filter((k) => k.id === idOrName || k.name === idOrName)
  if (hits.length === 0) throw new ApiKeyError(`no API key with id or name '${idOrName}' (llmesh apikey list)`)
  if (hits.length > 1) throw new ApiKeyError(`'${idOrName}' names more than one key: revoke by id`)
  const gone = hits[0]!
  await writeApiKeys(file, keys.filter((k) => k !== gone))
  return infoOf(gone)
}

function infoOf (k: ApiKeyRecord): ApiKeyInfo {
  return { id: k.id, name: k.name, createdAt: k.createdAt }
}

export interface ApiKeyStoreInit {
  /** @default Date.now */
  now?: () => number
  /** @default API_KEYS_RECHECK_MS */
  recheckMs?: number
  /** told when the file changed and could not be read (every key is refused until it can) */
  onError?: (err: Error) => void
}

/**
 * The agent's view of the API keys file. Keys are 256 random bits, so their SHA-256 is as hard
 * to reverse as the key is to guess: a slow password hash (scrypt) would only cost every
 * request time. A presented key is hashed and compared with every stored hash in constant time.
 *
 * The file is checked for changes (size, mtime, inode) at most every `recheckMs` while requests
 * come in, and at once when a key matches nothing, so `llmesh apikey add` works at once and
 * `revoke` within `recheckMs`, without a restart. A file that stops parsing fails closed: every
 * key is refused until it parses again.
 */
export class ApiKeyStore {
  readonly file: string
  private hashes: Buffer[] = []
  private signature = ''
  private checkedAt = -Infinity
  private readonly now: () => number
  private readonly recheckMs: number
  private readonly onError: ((err: Error) => void) | undefined

  constructor (file: string, init: ApiKeyStoreInit = {}) {
    this.file = file
    this.now = init.now ?? Date.now
    this.recheckMs = init.recheckMs ?? API_KEYS_RECHECK_MS
    this.onError = init.onError
  }

  /** Reads the file; throws ApiKeyError when it exists and does not parse (an agent then refuses to start). */
  async load (): Promise<void> {
    await this.reload(true)
  }

  /** Whether any key exists (as of the last check). */
  get size (): number {
    return this.hashes.length
  }

  /** Checks the file when it is due (or `force`), then whether any key exists. */
  async hasKeys (): Promise<boolean> {
    if (this.now() - this.checkedAt >= this.recheckMs) await this.reload(false)
    return this.hashes.length > 0
  }

  /** Whether `presented` is one of the stored keys. */
  async verify (presented: string): Promise<boolean> {
    if (this.now() - this.checkedAt >= this.recheckMs) await this.reload(false)
    if (this.matches(presented)) return true
    // a key added since the last check works at once
    if (await this.reload(false)) return this.matches(presented)
    return false
  }

  private matches (presented: string): boolean {
    const h = sha256(presented)
    let found = false
    for (const stored of this.hashes) found = timingSafeEqual(h, stored) || found
    return found
  }

  /** Re-reads the file if it changed; true when it did. */
  private async reload (throwOnError: boolean): Promise<boolean> {
    this.checkedAt = this.now()
    let sig: string
    try {
      const s = await stat(this.file)
      sig = `${s.ino}:${s.size}:${s.mtimeMs}`
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return this.fail(err as Error, throwOnError)
      sig = 'none'
    }
    if (sig === this.signature) return false
    try {
      const keys = await readApiKeys(this.file)
      this.hashes = keys.map((k) => Buffer.from(k.sha256, 'hex'))
      this.signature = sig
      return true
    } catch (err) {
      return this.fail(err as Error, throwOnError, sig)
    }
  }

  private fail (err: Error, throwOnError: boolean, sig = ''): boolean {
    if (throwOnError) throw err
    // fail closed: while a keys file exists that does not read, the API takes no key at all
    if (sig !== this.signature) this.onError?.(err)
    this.signature = sig
    this.hashes = [LOCKED]
    return true
  }
}

/** A hash no key has (all zero): keeps the API locked while the keys file does not read. */
const LOCKED = Buffer.alloc(32)
