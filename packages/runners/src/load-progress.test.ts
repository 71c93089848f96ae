import { describe, expect, it } from 'vitest'
import { LoadDotsParser, parseChildLoadProgress } from './load-progress.js'

/**
 * Two stderr samples. The first is written after llama.cpp's default progress callback
 * (src/llama.cpp: a '.' per report that passes a whole percent, a newline at 100 %) in the log
 * format of builds whose server leaves that callback in place: reconstructed, not captured. The
 * second is captured from the pinned test build, whose server installs a callback of its own and
 * prints no dots: it must report nothing.
 */
const WITH_DOTS = [
  'llm_load_tensors: ggml ctx size =    0.11 MiB',
  'llm_load_tensors:        CPU buffer size =  4165.37 MiB',
  `${'.'.repeat(83)}`,
  'llama_new_context_with_model: n_ctx      = 4096',
  'llama_kv_cache_init:        CPU KV buffer size =   512.00 MiB'
].join('\n') + '\n'

const WITHOUT_DOTS = [
  '0.00.031.926 I load_tensors: loading model tensors, this can take a while... (load_mode = mmap)',
  '0.00.032.299 I load_tensors:   CPU_Mapped model buffer size =     0.49 MiB',
  '0.00.032.615 I llama_context: constructing llama_context',
  '0.00.035.693 I srv  llama_server: model loaded'
].join('\n') + '\n'

function feed (text: string, chunk: number): number[] {
  const seen: number[] = []
  const parser = new LoadDotsParser((p) => { seen.push(p) })
  for (let i = 0; i < text.length; i += chunk) parser.push(text.slice(i, i + chunk))
  return seen
}

describe('LoadDotsParser', () => {
  it.each([1, 7, 64, 4096])('reads the dots after load_tensors as a growing share, 1 at their newline (chunks of %i)', (chunk) => {
    const seen = feed(WITH_DOTS, chunk)
    expect(seen.at(-1)).toBe(1)
    expect(seen.slice(0, -1).every((p) => p > 0 && p <= 0.83)).toBe(true)
    for (let i = 1; i < seen.length; i++) expect(seen[i]!).toBeGreaterThanOrEqual(seen[i - 1]!)
    expect(seen.filter((p) => p === 1)).toHaveLength(1) // later lines report nothing
  })

  it('reports nothing for a build that prints no dots, nor for dots before load_tensors', () => {
    expect(feed(WITHOUT_DOTS, 5)).toEqual([])
    expect(feed('...\nllama_model_loader: loaded meta data\n', 3)).toEqual([])
  })
})

describe('parseChildLoadProgress', () => {
  /** a state line as server_child::notify_to_router (tools/server/server-models.cpp) writes it */
  const line = (msg: unknown): string => `cmd_child_to_router:state:${JSON.stringify(msg)}`

  it('reads the share of a loading report, across its stages in order', () => {
    expect(parseChildLoadProgress(line({ state: 'loading', payload: { stages: ['text_model'], current: 'text_model', value: 0.42 } }))).toBe(0.42)
    expect(parseChildLoadProgress(line({ state: 'loading', payload: { stages: ['text_model', 'mmproj_model'], current: 'text_model', value: 1 } }))).toBe(0.5)
    expect(parseChildLoadProgress(line({ state: 'loading', payload: { stages: ['text_model', 'mmproj_model'], current: 'mmproj_model', value: 0.5 } }))).toBe(0.75)
    // a stage not listed: its own share
    expect(parseChildLoadProgress(line({ state: 'loading', payload: { current: 'text_model', value: 0.3 } }))).toBe(0.3)
    // bounded to 0..1
    expect(parseChildLoadProgress(line({ state: 'loading', payload: { stages: ['text_model'], current: 'text_model', value: 7 } }))).toBe(1)
  })

  it('ignores other states, log lines and malformed reports', () => {
    expect(parseChildLoadProgress(line({ state: 'ready', payload: { value: 1 } }))).toBeUndefined()
    expect(parseChildLoadProgress('0.00.031.926 I load_tensors: loading model tensors')).toBeUndefined()
    expect(parseChildLoadProgress('cmd_child_to_router:state:{"state":"loading","payload":{"value":0.4')).toBeUndefined()
    expect(parseChildLoadProgress('cmd_child_to_router:state:null')).toBeUndefined()
    expect(parseChildLoadProgress(line({ state: 'loading', payload: { value: '0.4' } }))).toBeUndefined()
    expect(parseChildLoadProgress(line({ state: 'loading' }))).toBeUndefined()
  })
})
