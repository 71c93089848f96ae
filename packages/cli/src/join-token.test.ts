import { afterEach, describe, expect, it } from 'vitest'
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { newClusterKey } from '@llmesh/agent'
import { decodeJoinToken, encodeJoinToken, invite, keygen, storeJoinedKey } from './join-token.js'

const dirs: string[] = []
afterEach(async () => { await Promise.all(dirs.splice(0).map(async (d) => { await rm(d, { recursive: true, force: true }) })) })
async function tmp (): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'llmesh-join-'))
  dirs.push(d)
  return d
}

describe('join tokens', () => {
  it('round-trip the cluster id, key and addresses', () => {
    const key = newClusterKey()
    const t = decodeJoinToken(encodeJoinToken({ clusterId: 'lab', key, addrs: ['/ip4/10.0.0.1/tcp/4778/p2p/12D3KooWx'] }))
    expect(t.clusterId).toBe('lab')
    expect(Buffer.from(t.key).equals(Buffer.from(key))).toBe(true)
    expect(t.addrs).toEqual(['/ip4/10.0.0.1/tcp/4778/p2p/12D3KooWx'])
  })

  it('refuse what is not a token with one clear line', () => {
    expect(() => decodeJoinToken('hello')).toThrow(/not a join token.*llmesh invite/)
    expect(() => decodeJoinToken('llmesh-join-1.%%%')).toThrow(/does not decode/)
    const cut = encodeJoinToken({ clusterId: 'x', key: newClusterKey(), addrs: [] })
    expect(() => decodeJoinToken(cut.slice(0, cut.length - 20))).toThrow(/not a join token/)
    const noKey = 'llmesh-join-1.' + Buffer.from(JSON.stringify({ c: 'x', k: 'abc', a: [] })).toString('base64url')
    expect(() => decodeJoinToken(noKey)).toThrow(/malformed/)
  })

  it('store the key 0600, accept the same key again, refuse another cluster\'s', async () => {
    const d = await tmp()
    const key = newClusterKey()
    const file = await storeJoinedKey(join(d, 'data'), key)
    expect((await stat(file)).mode & 0o777).toBe(0o600)
    expect((await stat(join(d, 'data'))).mode & 0o777).toBe(0o700)
    await storeJoinedKey(join(d, 'data'), key)
    await expect(storeJoinedKey(join(d, 'data'), newClusterKey())).rejects.toThrow(/key of another cluster/)
  })

  it('invite makes a token from the data dir\'s key and the running agent\'s off-loopback addresses', async () => {
    const d = await tmp()
    await expect(invite({ dataDir: d })).rejects.toThrow(/no cluster key/)
    await keygen(join(d, 'cluster.key'))
    await expect(invite({ dataDir: d })).rejects.toThrow(/no running agent/)
    await writeFile(join(d, 'agent.json'), JSON.stringify({
      peerId: 'p', name: 'n', clusterId: 'lab', api: 'http://127.0.0.1:1', pid: 1, startedAt: 0,
      addrs: ['/ip4/127.0.0.1/tcp/4778/p2p/P', '/ip4/10.0.0.5/tcp/4778/p2p/P']
    }))
    const r = await invite({ dataDir: d })
    const t = decodeJoinToken(r.token)
    expect(t.addrs).toEqual(['/ip4/10.0.0.5/tcp/4778/p2p/P'])
    expect(t.clusterId).toBe('lab')
    expect(r.keyId).toMatch(/^[0-9a-f]{12}$/)
  })

  it('keygen never overwrites a key', async () => {
    const d = await tmp()
    const out = join(d, 'sub', 'k')
    await keygen(out)
    const before = await readFile(out, 'utf8')
    await expect(keygen(out)).rejects.toThrow(/never overwritten/)
    expect(await readFile(out, 'utf8')).toBe(before)
  })
})
