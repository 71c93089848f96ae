import { afterEach, describe, expect, it } from 'vitest'
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { formatClusterKey, newClusterKey } from '@llmesh/mesh'
import { CLUSTER_KEY_FILE, isLoopbackAddr, keyId, resolveClusterTrust } from './cluster-trust.js'

const dirs: string[] = []
afterEach(async () => { await Promise.all(dirs.splice(0).map(async (d) => { await rm(d, { recursive: true, force: true }) })) })
async function tmp (): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'llmesh-trust-'))
  dirs.push(d)
  return d
}
const refuseNothing = async (): Promise<void> => {}
const cfg = (dataDir: string, listen: string[], extra: { clusterKeyFile?: string, openMesh?: boolean } = {}) =>
  ({ dataDir, p2p: { listen } as never, openMesh: extra.openMesh ?? false, ...(extra.clusterKeyFile != null ? { clusterKeyFile: extra.clusterKeyFile } : {}) })

describe('isLoopbackAddr', () => {
  it('tells loopback listen addresses from the rest', () => {
    for (const a of ['/ip4/127.0.0.1/tcp/0', '/ip4/127.1.2.3/tcp/4778', '/ip6/::1/tcp/1', '/dns4/localhost/tcp/1']) expect(isLoopbackAddr(a)).toBe(true)
    for (const a of ['/ip4/0.0.0.0/tcp/4778', '/ip6/::/tcp/1', '/ip4/10.77.0.10/tcp/4778', '/ip4/192.168.1.2/tcp/1', '/dns4/gpu1/tcp/1', 'garbage']) expect(isLoopbackAddr(a)).toBe(false)
  })
})

describe('resolveClusterTrust', () => {
  it('home mode on loopback: no key made', async () => {
    const d = await tmp()
    const t = await resolveClusterTrust(cfg(d, ['/ip4/127.0.0.1/tcp/0']), refuseNothing)
    expect(t).toEqual({ mode: 'home', created: false })
    await expect(stat(join(d, CLUSTER_KEY_FILE))).rejects.toThrow()
  })

  it('lab mode off loopback: creates cluster.key 0600 once, then reads it back', async () => {
    const d = await tmp()
    const first = await resolveClusterTrust(cfg(d, ['/ip4/0.0.0.0/tcp/4778']), refuseNothing)
    expect(first.mode).toBe('lab')
    expect(first.created).toBe(true)
    expect((await stat(join(d, CLUSTER_KEY_FILE))).mode & 0o777).toBe(0o600)
    const again = await resolveClusterTrust(cfg(d, ['/ip4/0.0.0.0/tcp/4778']), refuseNothing)
    expect(again.created).toBe(false)
    expect(keyId(again.key!)).toBe(keyId(first.key!))
  })

  it('two agents starting on one data dir end with one key', async () => {
    const d = await tmp()
    const both = await Promise.all([0, 1].map(async () => await resolveClusterTrust(cfg(d, ['/ip4/0.0.0.0/tcp/0']), refuseNothing)))
    expect(keyId(both[0]!.key!)).toBe(keyId(both[1]!.key!))
    expect(both.filter((t) => t.created)).toHaveLength(1)
  })

  it('--cluster-key FILE is used, and a missing one is an error, not a new key', async () => {
    const d = await tmp()
    const key = newClusterKey()
    await writeFile(join(d, 'k'), formatClusterKey(key), { mode: 0o600 })
    const t = await resolveClusterTrust(cfg(d, ['/ip4/10.0.0.1/tcp/1'], { clusterKeyFile: join(d, 'k') }), refuseNothing)
    expect(keyId(t.key!)).toBe(keyId(key))
    await expect(resolveClusterTrust(cfg(d, ['/ip4/10.0.0.1/tcp/1'], { clusterKeyFile: join(d, 'nope') }), refuseNothing)).rejects.toThrow(/not found/)
  })

  it('--open-mesh off loopback: no key, open mode', async () => {
    const d = await tmp()
    const t = await resolveClusterTrust(cfg(d, ['/ip4/0.0.0.0/tcp/1'], { openMesh: true }), refuseNothing)
    expect(t).toEqual({ mode: 'open', created: false })
  })

  it('refuses a key file the check refuses, and a file that is no key', async () => {
    const d = await tmp()
    await writeFile(join(d, CLUSTER_KEY_FILE), formatClusterKey(newClusterKey()), { mode: 0o644 })
    await chmod(join(d, CLUSTER_KEY_FILE), 0o644)
    const check = async (file: string): Promise<void> => { if (((await stat(file)).mode & 0o077) !== 0) throw new Error(`${file} is readable by other users`) }
    await expect(resolveClusterTrust(cfg(d, ['/ip4/0.0.0.0/tcp/1']), check)).rejects.toThrow(/readable by other users/)
    await writeFile(join(d, 'bad'), 'hello', { mode: 0o600 })
    await expect(resolveClusterTrust(cfg(d, ['/ip4/0.0.0.0/tcp/1'], { clusterKeyFile: join(d, 'bad') }), check)).rejects.toThrow(/not a cluster key/)
    expect(await readFile(join(d, 'bad'), 'utf8')).toBe('hello')
  })
})
