import { LlmeshError } from '@llmesh/protocol'
import { MAX_JSON_DEPTH } from './constants.js'

/**
 * Depth of a parsed JSON value (a scalar is 0, `[]` and `{}` are 1), walked without recursion so
 * any depth is measured without touching the stack; stops as soon as `limit` is passed and
 * answers `limit + 1`.
 */
export function jsonDepth (value: unknown, limit = Infinity): number {
  if (value === null || typeof value !== 'object') return 0
  const stack: Array<[object, number]> = [[value, 1]]
  let max = 0
  while (stack.length > 0) {
    const [node, depth] = stack.pop()!
    if (depth > max) {
      max = depth
      if (max > limit) return max
    }
    const children = Array.isArray(node) ? node : Object.values(node)
    for (const child of children) {
      if (child !== null && typeof child === 'object') stack.push([child, depth + 1])
    }
  }
  return max
}

/**
 * Refuses a request body nested deeper than `limit` with INVALID_REQUEST (400): the request's
 * own content is at fault, whichever host it would go to.
 */
export function assertJsonDepth (body: unknown, limit = MAX_JSON_DEPTH): void {
  if (jsonDepth(body, limit) > limit) {
    throw new LlmeshError('INVALID_REQUEST', `request body nested deeper than ${limit} levels`)
  }
}
