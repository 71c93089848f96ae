import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ApiKeyError, ApiKeyStore, addApiKey, apiKeysPath, listApiKeys, revokeApiKey } from './api-keys.js'

let dir: string
beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'llmesh-apikeys-')) })
afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

describe('API keys file', () => {
  it('adds a key shown once: the file (mode 0600) holds its hash, never the key', async () => {
    const { key, info } = await addApiKey(dir, 'laptop')
    expect(key).toMatch(/^llmesh_[\w-]{43}$/)
    expect(info).toMatchObject({ name: 'laptop', id: expect.stringMatching(/^[0-9a-f]{8}$/) })
    const text = await readFile(apiKeysPath(dir), 'utf8')
    expect(text).not.toContain(key)
    expect(text).not.toContain(key.slice('llmesh_'.length))
    expect((await stat(apiKeysPath(dir))).mode & 0o777).toBe(0o600)
    expect(await listApiKeys(dir)).toEqual([info])
  })

  it('lists, refuses a duplicate name, revokes by id or name', async () => {
    const a = await addApiKey(dir, 'a')
    const b = await addApiKey(dir)
    expect(b.info.name).toBe(`key-${b.info.id}`)
    await expect(addApiKey(dir, 'a')).rejects.toThrow(ApiKeyError)
    await expect(addApiKey(dir, 'bad\u001b[2Jname')).rejects.toThrow(/control characters/)
    expect((await listApiKeys(dir)).map((k) => k.name)).toEqual(['a', b.info.name])
    expect(await revokeApiKey(dir, a.info.id)).toEqual(a.info)
    expect(await revokeApiKey(dir, b.info.name)).toEqual(b.info)
    expect(await listApiKeys(dir)).toEqual([])
    await expect(revokeApiKey(dir, 'nobody')).rejects.toThrow(/no API key with id or name 'nobody'/)
  })

  it('loses no key when several adds run at once', async () => {
    const added = await Promise.all(Array.from({ length: 8 }, async (_, i) => await addApiKey(dir, `k${i}`)))
    expect((await listApiKeys(dir)).map((k) => k.name).sort()).toEqual(added.map((a) => a.info.name).sort())
  })

  it('says clearly when the file is not a keys file', async () => {
    await writeFile(apiKeysPath(dir), '{"version":1,"keys":[{"id":"zz"}]}')
    await expect(listApiKeys(dir)).rejects.toThrow(/is not an API keys file/)
    await writeFile(apiKeysPath(dir), 'not json')
    await expect(listApiKeys(dir)).rejects.toThrow(/is not valid JSON/)
  })
})

describe('ApiKeyStore', () => {
  it('takes a stored key, refuses others; a new key works at once, a revoked one after the recheck', async () => {
    let now = 0
    const store = new ApiKeyStore(apiKeysPath(dir), { now: () => now, recheckMs: 1000 })
    await store.load()
    expect(await store.hasKeys()).toBe(false)
    const { key, info } = await addApiKey(dir, 'k1')
    // a key that matches nothing makes the store look at the file again at once
    expect(await store.verify(key)).toBe(true)
    expect(await store.hasKeys()).toBe(true)
    expect(await store.verify(`${key}x`)).toBe(false)
    expect(await store.verify('')).toBe(false)
    await revokeApiKey(dir, info.id)
    now += 1000
    expect(await store.verify(key)).toBe(false)
    expect(await store.hasKeys()).toBe(false)
  })

  it('fails closed when the file stops parsing, and opens again when it is fixed', async () => {
    let now = 0
    const errors: string[] = []
    const store = new ApiKeyStore(apiKeysPath(dir), { now: () => now, recheckMs: 1000, onError: (e) => errors.push(e.message) })
    const { key } = await addApiKey(dir)
    await store.load()
    const good = await readFile(apiKeysPath(dir), 'utf8')
    await writeFile(apiKeysPath(dir), '{ broken')
    now += 1000
    expect(await store.verify(key)).toBe(false)
    expect(await store.hasKeys()).toBe(true)
    expect(errors).toHaveLength(1)
    await writeFile(apiKeysPath(dir), good)
    now += 1000
    expect(await store.verify(key)).toBe(true)
    // an agent does not start on a broken file
    await writeFile(apiKeysPath(dir), '{ broken')
    await expect(new ApiKeyStore(apiKeysPath(dir)).load()).rejects.toThrow(ApiKeyError)
  })
})
