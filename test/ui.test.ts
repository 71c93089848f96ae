/**
 * The dashboard in a real headless Chromium (Debian's package, driven by playwright-core) on a
 * real three-agent mesh on loopback: host-b serves the tiny model on a real llama-server, host-a
 * (whose page is opened) and host-c serve nothing. The page shows three hosts; a chat request
 * sent to host-a and served by host-b appears in its requests list; host-c killed turns suspect
 * or dead on the page. Screenshots go to the test's temp dir; with LLMESH_UPDATE_DASHBOARD_PNG=1
 * the first also replaces docs/dashboard.png (the README's picture). Once host-a has an API key,
 * the page gets no data without it, and gets it with the key in its URL fragment.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { copyFile, mkdtemp, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request } from 'undici'
import { chromium, type Browser, type Page } from 'playwright-core'
import { runLlmesh, startAgentProcess, waitFor, waitForReadyRunner, type AgentProcess, LOOPBACK_AGENT_ARGS } from '@llmesh/fixtures'

const llamaServer = process.env['LLMESH_TEST_LLAMA_SERVER']!
const model = process.env['LLMESH_TEST_MODEL']!
const browserPath = process.env['LLMESH_TEST_CHROMIUM']
const skipReason = process.env['LLMESH_TEST_CHROMIUM_SKIP'] ?? 'no browser found by the fixtures setup'
/** The page's size, px: also the committed screenshot's. */
const VIEWPORT = { width: 1000, height: 700 }
/** Longest wait for the page to show a change of the mesh, ms. */
const PAGE_WAIT_MS = 30_000

describe.skipIf(browserPath == null)(`dashboard in a headless browser${browserPath == null ? ` (skipped: ${skipReason})` : ''}`, () => {
  let dir: string
  let a: AgentProcess, b: AgentProcess, c: AgentProcess
  const hosts: AgentProcess[] = []
  let browser: Browser | undefined
  let page: Page

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'llmesh-ui-'))
    a = await startAgentProcess({ name: 'host-a', dataDir: join(dir, 'a'), args: [...LOOPBACK_AGENT_ARGS] })
    hosts.push(a)
    const boot = ['--bootstrap', a.info.addrs[0]!]
    b = await startAgentProcess({ name: 'host-b', dataDir: join(dir, 'b'), args: [...LOOPBACK_AGENT_ARGS, ...boot, '--model', `tiny=${model}`, '--llama-server', llamaServer, '--slots', '2'] })
    hosts.push(b)
    c = await startAgentProcess({ name: 'host-c', dataDir: join(dir, 'c'), args: [...LOOPBACK_AGENT_ARGS, ...boot] })
    hosts.push(c)
    await waitFor('host-a to see three alive hosts', async () => {
      const v = await (await request(`${a.info.api}/mesh/view`)).body.json() as { nodes: Array<{ state: string }> }
      return v.nodes.length === 3 && v.nodes.every((n) => n.state === 'alive')
    }, 60_000)
    await waitForReadyRunner(a, b, { model: 'tiny' })
    browser = await chromium.launch({ executablePath: browserPath, args: ['--no-sandbox'] })
    page = await browser.newPage({ viewport: VIEWPORT })
  }, 120_000)

  afterAll(async () => {
    await browser?.close()
    await Promise.all(hosts.map(async (h) => { await h.stop(5000) }))
    if (dir != null) await rm(dir, { recursive: true, force: true })
  })

  it('shows the three hosts of the mesh, this one marked, from the agent\'s stream', async () => {
    const errors: string[] = []
    page.on('pageerror', (err) => { errors.push(err.message) })
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()) })
    await page.goto(`${a.info.api}/ui`)
    await page.waitForFunction(() => document.querySelectorAll('#topology g.host').length === 3 && document.querySelectorAll('#hosts tbody tr').length === 3, undefined, { timeout: PAGE_WAIT_MS })
    const names = await page.locator('#hosts tbody tr td:first-child').allTextContents()
    expect(names.sort()).toEqual(['host-a', 'host-b', 'host-c'])
    expect(await page.locator('#topology g.host.self').getAttribute('data-peer')).toBe(a.info.peerId)
    expect(await page.locator(`#topology g.host[data-peer="${b.info.peerId}"]`).getAttribute('data-state')).toBe('alive')
    // who serves what: host-b's runner of tiny, and its placement
    await page.waitForFunction((peer) => document.querySelector(`#hosts tr[data-peer="${peer}"]`)?.textContent?.includes('tiny [ready]') === true, b.info.peerId, { timeout: PAGE_WAIT_MS })
    await page.waitForFunction((peer) => document.querySelector(`#placements tr[data-model="tiny"][data-peer="${peer}"]`)?.getAttribute('data-state') === 'ready', b.info.peerId, { timeout: PAGE_WAIT_MS })
    expect(await page.locator('#conn').getAttribute('data-state')).toBe('open')
    expect(errors).toEqual([])
  })

  it('lists a chat request sent through the API, with its entry, the host that served it and its TTFT', async () => {
    expect(await page.locator('#requests tbody tr').count()).toBe(0)
    const res = await request(`${a.info.api}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tiny', max_tokens: 4, stream: true, messages: [{ role: 'user', content: 'hello' }] })
    })
    const text = await res.body.text()
    expect(res.statusCode, text).toBe(200)
    expect(res.headers['x-llmesh-node']).toBe(b.info.peerId)
    const row = page.locator('#requests tbody tr').first()
    await row.waitFor({ timeout: PAGE_WAIT_MS })
    expect(await page.locator('#requests tbody tr').count()).toBe(1)
    const cells = await row.locator('td').allTextContents()
    expect(cells[1]).toBe('tiny')
    expect(cells[2]).toBe('host-a')
    expect(cells[3]).toBe('host-b')
    expect(cells[4]).toMatch(/^\d+(\.\d)? m?s$/)
    expect(cells[5]).toBe('ok')
    expect(cells[6]).not.toBe('')
    expect(await row.getAttribute('data-outcome')).toBe('ok')
    // host-b's figures follow: its tokens/s, from its heartbeats' metrics
    await page.waitForFunction((peer) => Number(document.querySelector(`#hosts tr[data-peer="${peer}"] td:nth-child(7)`)?.textContent) > 0, b.info.peerId, { timeout: PAGE_WAIT_MS })
    const shot = join(dir, 'dashboard.png')
    await page.screenshot({ path: shot })
    expect((await stat(shot)).size).toBeGreaterThan(0)
    if (process.env['LLMESH_UPDATE_DASHBOARD_PNG'] === '1') await copyFile(shot, join(import.meta.dirname, '..', 'docs', 'dashboard.png'))
  })

  it('turns a host that stopped answering suspect, then dead, on the page', async () => {
    await c.kill()
    const state = await page.waitForFunction((peer) => {
      const s = document.querySelector(`#topology g.host[data-peer="${peer}"]`)?.getAttribute('data-state')
      return s === 'suspect' || s === 'dead' ? s : false
    }, c.info.peerId, { timeout: PAGE_WAIT_MS })
    expect(['suspect', 'dead']).toContain(await state.jsonValue())
    expect(await page.locator(`#hosts tr[data-peer="${c.info.peerId}"]`).getAttribute('data-state')).toMatch(/^(suspect|dead)$/)
    // the others stay alive
    expect(await page.locator(`#topology g.host[data-peer="${b.info.peerId}"]`).getAttribute('data-state')).toBe('alive')
    await page.screenshot({ path: join(dir, 'dashboard-host-down.png') })
  })

  it('needs the API key once one exists: none, no data; the key in the page\'s fragment, the mesh', async () => {
    const { key } = JSON.parse((await runLlmesh(['apikey', 'add', '--name', 'dashboard', '--data-dir', join(dir, 'a'), '--json'])).stdout) as { key: string }
    await waitFor('host-a to need the key', async () => (await request(`${a.info.api}/mesh/view`)).statusCode === 401)
    const closed = await browser!.newPage({ viewport: VIEWPORT })
    await closed.goto(`${a.info.api}/ui`)
    await closed.waitForFunction(() => document.getElementById('conn')?.dataset['state'] === 'error', undefined, { timeout: PAGE_WAIT_MS })
    expect(await closed.locator('#topology g.host').count()).toBe(0)
    await closed.close()
    const open = await browser!.newPage({ viewport: VIEWPORT })
    await open.goto(`${a.info.api}/ui#key=${encodeURIComponent(key)}`)
    await open.waitForFunction(() => document.querySelectorAll('#hosts tbody tr').length === 3, undefined, { timeout: PAGE_WAIT_MS })
    expect(await open.locator('#conn').getAttribute('data-state')).toBe('open')
    await open.close()
  })
})
