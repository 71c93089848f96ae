import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { mkdir, readFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { checkPrivateFile, writeFileDurable } from './files.js'

/**
 * Loads the agent's libp2p key from `file`, creating an Ed25519 key there on first start, so
 * an agent keeps its peer id across restarts. The file is written 0600 (durably); an existing
 * one that other users may read is refused (UnsafeFileError): whoever holds it is this host.
 */
export async function loadOrCreateKey (file: string): Promise<PrivateKey> {
  await checkPrivateFile(file, 'peer key')
  try {
    return privateKeyFromProtobuf(await readFile(file))
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new Error(`cannot read the peer key at ${file}: ${(err as Error).message}`, { cause: err })
    }
  }
  const key = await generateKeyPair('Ed25519')
  await mkdir(dirname(file), { recursive: true })
  await writeFileDurable(file, privateKeyToProtobuf(key), 0o600)
  return key
}

/** The peer id (base58 string) that belongs to a private key. */
export function peerIdOfKey (key: PrivateKey): string {
  return peerIdFromPrivateKey(key).toString()
}
