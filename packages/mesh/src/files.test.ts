import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { chmod, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { checkPrivateFile, ensurePrivateDir, removeStaleTempFiles, UnsafeFileError, writeFileDurable, writeFileExclusive } from './files.js'
import { loadOrCreateKey } from './identity.js'

let dir: string
beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'llmesh-files-')) })
afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

describe('writeFileDurable', () => {
  it('leaves one whole version of the file and no temp file when writers race', async () => {
    const file = join(dir, 'cluster.snapshot')
    const versions = Array.from({ length: 40 }, (_, i) => `version ${i} `.repeat(2000))
    await Promise.all(versions.map(async (v) => { await writeFileDurable(file, v) }))
    expect(versions).toContain(await readFile(file, 'utf8'))
    expect(await readdir(dir)).toEqual(['cluster.snapshot'])
    expect((await stat(file)).mode & 0o777).toBe(0o600)
  })
})

describe('writeFileExclusive', () => {
  it('lets one of racing creators write, refuses the others with EEXIST, and no reader sees a partial file', async () => {
    const file = join(dir, 'cluster.key')
    const versions = Array.from({ length: 20 }, (_, i) => `key ${i} `.repeat(2000))
    const seen: string[] = []
    const reader = (async () => {
      for (let i = 0; i < 200; i++) {
        const text = await readFile(file, 'utf8').catch(() => undefined)
        if (text != null) seen.push(text)
        await new Promise<void>((resolve) => { setImmediate(resolve) })
      }
    })()
    const results = await Promise.allSettled(versions.map(async (v) => { await writeFileExclusive(file, v) }))
    await reader
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1)
    for (const r of results) if (r.status === 'rejected') expect((r.reason as NodeJS.ErrnoException).code).toBe('EEXIST')
    const content = await readFile(file, 'utf8')
    expect(versions).toContain(content)
    expect(seen.every((text) => text === content)).toBe(true)
    expect(await readdir(dir)).toEqual(['cluster.key'])
    expect((await stat(file)).mode & 0o777).toBe(0o600)
  })
})

describe('removeStaleTempFiles', () => {
  it('deletes the temp files of a writer killed mid-write, nothing else', async () => {
    await writeFile(join(dir, '.cluster.snapshot.4242.0123456789ab.tmp'), 'half')
    await writeFile(join(dir, 'cluster.snapshot'), 'whole')
    await writeFile(join(dir, 'notes.tmp'), 'a user file')
    expect(await removeStaleTempFiles(dir)).toEqual(['.cluster.snapshot.4242.0123456789ab.tmp'])
    expect((await readdir(dir)).sort()).toEqual(['cluster.snapshot', 'notes.tmp'])
  })
})

describe('checkPrivateFile', () => {
  it('refuses a key file others may read, naming the file and the fix', async () => {
    const file = join(dir, 'peer.key')
    await writeFile(file, 'secret', { mode: 0o644 })
    await chmod(file, 0o644)
    const err = await checkPrivateFile(file, 'peer key').catch((e: unknown) => e)
    expect(err).toBeInstanceOf(UnsafeFileError)
    expect((err as UnsafeFileError).code).toBe('UNSAFE_FILE')
    expect((err as Error).message).toContain(file)
    expect((err as Error).message).toContain(`chmod 600 ${file}`)
    await chmod(file, 0o600)
    await expect(checkPrivateFile(file)).resolves.toBeUndefined()
    await expect(checkPrivateFile(join(dir, 'absent.key'))).resolves.toBeUndefined()
  })

  it('makes loadOrCreateKey refuse a 0644 peer key and create new ones 0600', async () => {
    const file = join(dir, 'peer.key')
    await loadOrCreateKey(file)
    expect((await stat(file)).mode & 0o777).toBe(0o600)
    await chmod(file, 0o644)
    await expect(loadOrCreateKey(file)).rejects.toThrow(`chmod 600 ${file}`)
  })
})

describe('ensurePrivateDir', () => {
  it('creates the data dir 0700, refuses one others may write, warns about one others may read', async () => {
    const data = join(dir, 'a', 'llmesh')
    expect(await ensurePrivateDir(data)).toBeUndefined()
    expect((await stat(data)).mode & 0o777).toBe(0o700)
    const open = join(dir, 'open')
    await mkdir(open)
    await chmod(open, 0o777)
    await expect(ensurePrivateDir(open)).rejects.toThrow(`chmod 700 ${open}`)
    await chmod(open, 0o755)
    expect(await ensurePrivateDir(open)).toContain('readable by other users')
  })
})
