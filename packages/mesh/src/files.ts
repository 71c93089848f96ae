import { randomBytes } from 'node:crypto'
import { link, mkdir, open, readdir, rename, stat, unlink } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'

/**
 * The host's own files: keys (peer key, cluster key) and what the agent keeps beside them
 * (snapshot, agent.json). They live here, beside the keys, because the mesh owns the key files
 * and the agent imports the mesh; one writer for both, no copy per package.
 */

/** Permission bits of group and others: a private file or directory has none of them. */
const GROUP_OTHER_BITS = 0o077
/** Write bits of group and others: a directory with one of them lets another user swap our files. */
const GROUP_OTHER_WRITE_BITS = 0o022
/** The sticky bit: set on shared directories such as /tmp. */
const STICKY_BIT = 0o1000

/**
 * A file or directory another user of the host could read or replace: the agent refuses to
 * start (like ssh with an unprotected private key). `code` is stable; the message names the
 * file and the fix.
 */
export class UnsafeFileError extends Error {
  override name = 'UnsafeFileError'
  readonly code = 'UNSAFE_FILE'
  readonly path: string

  constructor (path: string, message: string) {
    super(message)
    this.path = path
  }
}

/**
 * Writes `data` to `file` so that a crash at any moment leaves either the old content or the
 * new one, never a mix or an empty file: a temp file with a unique name in the same directory
 * (two writers never share one), fsync of the file, rename over `file`, fsync of the directory
 * (so the rename itself survives a power cut). The file is created with `mode`.
 *
 * Trade-off: two fsyncs per write cost milliseconds on a disk; callers write seconds apart.
 */
export async function writeFileDurable (file: string, data: string | Uint8Array, mode = 0o600): Promise<void> {
  const tmp = await writeTemp(file, data, mode)
  try {
    await rename(tmp, file)
  } catch (err) {
    await unlink(tmp).catch(() => {})
    throw err
  }
  await syncDir(dirname(file))
}

/**
 * Creates `file` with `data` unless it exists (then throws EEXIST), so that a reader never sees
 * it empty or half written: the content goes to a temp file first (fsync), which is then
 * hard-linked to `file` (a link fails atomically when the name is taken). A plain
 * `writeFile(..., { flag: 'wx' })` creates the name before it writes, and a second agent
 * starting at that instant read an empty cluster key.
 */
export async function writeFileExclusive (file: string, data: string | Uint8Array, mode = 0o600): Promise<void> {
  const tmp = await writeTemp(file, data, mode)
  try {
    await link(tmp, file)
  } finally {
    await unlink(tmp).catch(() => {})
  }
  await syncDir(dirname(file))
}

/**
 * Writes `data` to a new temp file beside `file` (a unique name: two writers never share one),
 * synced to disk, and returns its path; nothing is left behind when the write fails.
 */
async function writeTemp (file: string, data: string | Uint8Array, mode: number): Promise<string> {
  const tmp = join(dirname(file), `.${basename(file)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`)
  const fh = await open(tmp, 'wx', mode)
  try {
    await fh.writeFile(data)
    await fh.sync()
  } catch (err) {
    await fh.close().catch(() => {})
    await unlink(tmp).catch(() => {})
    throw err
  }
  await fh.close()
  return tmp
}

/** Names of writeFileDurable's temp files: `.<name>.<pid>.<12 hex>.tmp`. */
const TEMP_FILE = /^\..+\.\d+\.[0-9a-f]{12}\.tmp$/

/**
 * Deletes the temp files a writer killed mid-write left in `dir` (call it once the directory is
 * known to be this process's alone). Returns their names.
 */
export async function removeStaleTempFiles (dir: string): Promise<string[]> {
  const stale = (await readdir(dir).catch(() => [])).filter((n) => TEMP_FILE.test(n))
  await Promise.all(stale.map(async (n) => { await unlink(join(dir, n)).catch(() => {}) }))
  return stale
}

/** fsync of a directory, where the platform allows it (not on Windows). */
async function syncDir (dir: string): Promise<void> {
  let fh
  try {
    fh = await open(dir, 'r')
    await fh.sync()
  } catch {
    // EISDIR / EPERM on platforms without directory fsync: the rename is as durable as they allow
  } finally {
    await fh?.close().catch(() => {})
  }
}

/**
 * Refuses a secret file (peer key, cluster key) that other users of the host may read or
 * write, or that another user owns: throws UnsafeFileError naming the file and the fix
 * (`chmod 600 FILE`). A missing file passes (it is created 0600). No check on Windows, which
 * has no such mode bits.
 */
export async function checkPrivateFile (file: string, what = 'key file'): Promise<void> {
  if (process.platform === 'win32') return
  let st
  try {
    st = await stat(file)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
    throw err
  }
  const mode = st.mode & 0o777
  if ((mode & GROUP_OTHER_BITS) !== 0) {
    throw new UnsafeFileError(file, `${what} ${file} is accessible by other users (mode ${mode.toString(8).padStart(4, '0')}); llmesh refuses to use it: run \`chmod 600 ${file}\``)
  }
  const uid = process.getuid?.()
  if (uid != null && st.uid !== uid && st.uid !== 0) {
    throw new UnsafeFileError(file, `${what} ${file} belongs to another user (uid ${st.uid}); llmesh refuses to use it: make it yours (\`chown ${uid} ${file}\`) and \`chmod 600 ${file}\``)
  }
}

/**
 * Creates the data directory 0700 (parents too); an existing one that group or others may
 * write is refused (another user could swap the peer key or plant a snapshot). Returns a
 * warning when it is readable by others: the keys in it are checked one by one, the rest
 * (snapshot, agent.json) is not secret.
 */
export async function ensurePrivateDir (dir: string): Promise<string | undefined> {
  await mkdir(dir, { recursive: true, mode: 0o700 })
  if (process.platform === 'win32') return undefined
  const st = await stat(dir)
  const mode = st.mode & 0o777
  if ((st.mode & STICKY_BIT) !== 0) {
    // a shared directory such as /tmp itself: every user may create files in it
    throw new UnsafeFileError(dir, `data directory ${dir} is a shared directory; give llmesh a directory of its own (e.g. ${join(dir, 'llmesh')})`)
  }
  if ((mode & GROUP_OTHER_WRITE_BITS) !== 0) {
    throw new UnsafeFileError(dir, `data directory ${dir} is writable by other users (mode ${mode.toString(8).padStart(4, '0')}); llmesh refuses to use it: run \`chmod 700 ${dir}\``)
  }
  if ((mode & GROUP_OTHER_BITS) !== 0) {
    return `data directory ${dir} is readable by other users (mode ${mode.toString(8).padStart(4, '0')}); \`chmod 700 ${dir}\` keeps the cluster view private`
  }
  return undefined
}
