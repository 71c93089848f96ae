import { multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'

/** What a listen or bootstrap address looks like, for error messages. */
export const MULTIADDR_EXAMPLE = '/ip4/192.168.1.20/tcp/4778/p2p/12D3KooW...'

/**
 * Why `value` is not a usable libp2p multiaddr, or undefined when it is. The same parsers the
 * agent uses at start (`@multiformats/multiaddr`, `@libp2p/peer-id` for a `/p2p/` part), so a
 * value that passes here does not fail there with a parser's message.
 */
export function multiaddrProblem (value: string): string | undefined {
  let addr
  try {
    addr = multiaddr(value)
  } catch (err) {
    return `not a multiaddr (${(err as Error).message})`
  }
  for (const c of addr.getComponents()) {
    if (c.name !== 'p2p' || c.value == null) continue
    try {
      peerIdFromString(c.value)
    } catch {
      return `'/p2p/${c.value}' is not a peer id (the id 'llmesh status' shows, 12D3KooW...)`
    }
  }
  return undefined
}
