// The llmesh dashboard: renders the agent's `view` snapshots and `request` events from the
// server-sent event stream GET /ui/events. Plain DOM, no framework, no build step. Every text
// from the mesh goes in through textContent: host and model names come from other peers.
import { LABEL_LINE_PX, layoutTopology } from '/ui/layout.js'

/** Requests kept in the list, newest first. */
const MAX_REQUESTS = 200
/** The topology picture's height for its width (px, drawn at the page's own scale: text stays readable). */
const ASPECT = 0.72
const MIN_HEIGHT = 320
const MAX_HEIGHT = 640
/** Beyond this many hosts the topology takes the page's whole width. */
const WIDE_FROM_HOSTS = 8
/** Width of a host's label, px, for few and for many hosts; average character widths of the name and the line under it. */
const LABEL_WIDTH = { few: 120, many: 90 }
const NAME_CHAR_PX = 7
const SUB_CHAR_PX = 5.8
/** How long a request's dot travels from its entry to the host that served it, ms. */
const FLOW_MS = 900
const SVG = 'http://www.w3.org/2000/svg'

const state = { view: null, requests: [], positions: new Map(), nodeRadius: 30 }

function el (tag, attrs = {}, ...children) {
  const e = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs)) if (v != null) e.setAttribute(k, String(v))
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c ?? '')))
  return e
}

function svg (tag, attrs = {}, text) {
  const e = document.createElementNS(SVG, tag)
  for (const [k, v] of Object.entries(attrs)) if (v != null) e.setAttribute(k, String(v))
  if (text != null) e.textContent = String(text)
  return e
}

function badge (text, cls = text) { return el('span', { class: `badge ${cls}` }, text) }

function bytes (n) {
  if (n == null) return ''
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++ }
  return `${n >= 10 || i === 0 ? Math.round(n) : n.toFixed(1)} ${units[i]}`
}

function ms (n) {
  if (n == null) return '—'
  return n < 1000 ? `${Math.round(n)} ms` : `${(n / 1000).toFixed(1)} s`
}

function short (s, n = 22) { return s.length > n ? `${s.slice(0, n - 1)}…` : s }

function nameOf (peerId) {
  const n = state.view?.nodes.find((x) => x.peerId === peerId)
  return n != null ? n.name : `${peerId.slice(0, 6)}…${peerId.slice(-4)}`
}

/** The models a host serves now: its runners that are up, rpc-servers named as blocks. */
function serving (node) {
  return node.runners.filter((r) => r.state !== 'stopped' && r.state !== 'failed')
}

function renderHeader (v) {
  const self = v.nodes.find((n) => n.self)
  document.getElementById('self').textContent = self != null ? `${self.name} · ${v.self}` : v.self
  document.getElementById('trust').textContent = `trust: ${v.trust.mode}${v.trust.keyId != null ? ` (${v.trust.keyId})` : ''}`
  const up = v.nodes.filter((n) => n.state === 'alive').length
  document.getElementById('host-count').textContent = `${v.nodes.length} hosts, ${up} alive`
}

function renderTopology (v) {
  const root = document.getElementById('topology')
  const many = v.nodes.length > WIDE_FROM_HOSTS
  document.querySelector('main').classList.toggle('many', many)
  const labelWidth = many ? LABEL_WIDTH.many : LABEL_WIDTH.few
  const width = Math.max(320, Math.round(root.clientWidth || 1000))
  const height = Math.round(Math.min(MAX_HEIGHT, Math.max(MIN_HEIGHT, width * ASPECT)))
  root.setAttribute('viewBox', `0 0 ${width} ${height}`)
  root.setAttribute('height', String(height))
  const layout = layoutTopology(v.nodes.map((n) => ({ id: n.peerId, name: n.name, self: n.self })), width, height, labelWidth)
  state.nodeRadius = layout.nodeRadius
  state.positions = new Map(layout.hosts.map((h) => [h.id, h]))
  const r = layout.nodeRadius
  const small = r < 20
  const links = svg('g', { class: 'links' })
  const selfPos = state.positions.get(v.self)
  for (const n of v.nodes) {
    if (n.self || selfPos == null) continue
    const p = state.positions.get(n.peerId)
    links.append(svg('line', { class: `link ${n.connected ? 'up' : 'down'}`, x1: selfPos.x, y1: selfPos.y, x2: p.x, y2: p.y, 'data-peer': n.peerId }))
  }
  // split placements: the coordinator's plan, an arc to each member with its blocks
  const splits = svg('g', { class: 'splits' })
  for (const pl of v.placements) {
    if (pl.split == null || pl.peerId !== pl.split.coordinator) continue
    const a = state.positions.get(pl.split.coordinator)
    for (const h of pl.split.hosts) {
      const b = state.positions.get(h.peerId)
      if (a == null || b == null || h.peerId === pl.split.coordinator) continue
      const mx = (a.x + b.x) / 2 + (b.y - a.y) * 0.15
      const my = (a.y + b.y) / 2 - (b.x - a.x) * 0.15
      splits.append(svg('path', { class: 'split', d: `M${a.x},${a.y} Q${mx},${my} ${b.x},${b.y}` }))
      splits.append(svg('text', { class: 'split-label', x: mx, y: my }, `${short(pl.model, 14)}: ${h.layers} blocks`))
    }
  }
  const hosts = svg('g', { class: 'hosts' })
  for (const n of v.nodes) {
    const p = state.positions.get(n.peerId)
    const m = n.metrics
    const g = svg('g', { class: `host${n.self ? ' self' : ''}`, 'data-peer': n.peerId, 'data-state': n.state, transform: `translate(${p.x},${p.y})` })
    const title = svg('title', {}, `${n.name} (${n.state}${n.self ? ', this host' : n.connected ? ', linked' : ', no link'})\n${n.peerId}`)
    g.append(title)
    if (n.self) g.append(svg('circle', { class: 'ring', r: r + 6 }))
    g.append(svg('circle', { class: 'node', r }))
    // load: a pie share of slots busy
    if (m != null && m.slotsTotal > 0 && m.slotsBusy > 0) {
      const share = Math.min(1, m.slotsBusy / m.slotsTotal)
      const a = 2 * Math.PI * share - Math.PI / 2
      const large = share > 0.5 ? 1 : 0
      const inner = r - 3
      g.append(share >= 1
        ? svg('circle', { class: 'load', r: inner })
        : svg('path', { class: 'load', d: `M0,0 L0,${-inner} A${inner},${inner} 0 ${large} 1 ${inner * Math.cos(a)},${inner * Math.sin(a)} Z` }))
    }
    if (!small && m != null) g.append(svg('text', { class: 'inside', y: 0 }, `${m.slotsBusy}/${m.slotsTotal}`))
    // the label, placed by the layout (relative to the node's centre)
    const { label } = p
    const at = (dy) => ({ x: label.x - p.x, y: label.y - p.y + dy, 'text-anchor': label.anchor })
    g.append(svg('text', { class: 'name', ...at(0) }, short(n.name, Math.floor(labelWidth / NAME_CHAR_PX))))
    const models = serving(n).map((x) => x.kind === 'rpc-server' ? `${x.model} (blocks)` : x.model)
    const sub = models.length > 0
      ? models.slice(0, 2).join(', ') + (models.length > 2 ? ` +${models.length - 2}` : '')
      : m != null ? `q ${m.queueDepth} · ${m.tokensPerSec.toFixed(1)} tok/s` : ''
    g.append(svg('text', { class: 'sub', ...at(LABEL_LINE_PX) }, short(sub, Math.floor(labelWidth / SUB_CHAR_PX))))
    hosts.append(g)
  }
  const flows = root.querySelector('g.flows') ?? svg('g', { class: 'flows' })
  root.replaceChildren(links, splits, hosts, flows)
}

function renderHosts (v) {
  const body = document.querySelector('#hosts tbody')
  const rows = [...v.nodes].sort((a, b) => (b.self - a.self) || a.name.localeCompare(b.name)).map((n) => {
    const m = n.metrics
    const runners = serving(n).map((r) => `${r.model} [${r.kind === 'rpc-server' ? 'blocks' : r.state}${r.progress != null && r.state === 'loading' ? ` ${Math.round(r.progress * 100)}%` : ''}]`).join(', ')
    return el('tr', { class: n.self ? 'self' : null, 'data-peer': n.peerId, 'data-state': n.state },
      el('td', { title: n.peerId }, n.name),
      el('td', {}, badge(n.state)),
      el('td', {}, n.self ? '—' : n.connected ? 'linked' : 'no link'),
      el('td', { class: 'num' }, n.self ? '—' : n.heartbeatAgeMs == null ? 'never' : ms(n.heartbeatAgeMs)),
      el('td', { class: 'num' }, m != null ? `${m.slotsBusy}/${m.slotsTotal}` : '—'),
      el('td', { class: 'num' }, m != null ? m.queueDepth : '—'),
      el('td', { class: 'num' }, m != null ? m.tokensPerSec.toFixed(1) : '—'),
      el('td', { class: 'num' }, m != null && m.latencyMs > 0 ? ms(m.latencyMs) : '—'),
      el('td', { title: runners }, short(runners || '—', 60)))
  })
  body.replaceChildren(...rows)
}

function renderPlacements (v) {
  const body = document.querySelector('#placements tbody')
  const sorted = [...v.placements].sort((a, b) => a.model.localeCompare(b.model) || nameOf(a.peerId).localeCompare(nameOf(b.peerId)))
  const rows = sorted.map((p) => {
    const progress = p.state === 'ready' ? 1 : p.progress ?? 0
    const split = p.split != null ? p.split.hosts.map((h) => `${nameOf(h.peerId)}${h.peerId === p.split.coordinator ? '*' : ''} ${h.layers} blocks`).join(' · ') : ''
    const fill = el('i')
    // through the CSSOM: the page's CSP allows no inline style attribute
    fill.style.width = `${Math.round(progress * 100)}%`
    return el('tr', { 'data-model': p.model, 'data-peer': p.peerId, 'data-state': p.state },
      el('td', {}, p.model),
      el('td', {}, nameOf(p.peerId)),
      el('td', { title: p.error ?? '' }, badge(p.state)),
      el('td', {}, p.reason),
      el('td', {}, el('span', { class: 'bar' }, fill), ` ${Math.round(progress * 100)}%`),
      el('td', { class: 'num' }, bytes(p.footprintBytes)),
      el('td', { title: split }, short(split, 60)))
  })
  body.replaceChildren(...rows)
  // the mesh's catalog: every model on some host's disk, and where
  const where = new Map()
  for (const n of v.nodes) for (const m of n.models) where.set(m.name, [...(where.get(m.name) ?? []), n.name])
  const list = [...where].sort(([a], [b]) => a.localeCompare(b)).map(([m, hs]) => `${m} (on ${hs.join(', ')})`)
  document.getElementById('models').textContent = list.length > 0 ? `Models on disk: ${list.join(' · ')}` : 'No model on any host\'s disk.'
}

function renderRequests () {
  const body = document.querySelector('#requests tbody')
  const rows = state.requests.map((e) => el('tr', { 'data-request-id': e.id, 'data-outcome': e.outcome, class: e.local ? 'local' : null },
    el('td', {}, new Date(e.at).toLocaleTimeString([], { hour12: false })),
    el('td', { title: e.model }, short(e.model, 24)),
    el('td', {}, nameOf(e.entry)),
    el('td', {}, e.target != null ? nameOf(e.target) : '—'),
    el('td', { class: 'num' }, ms(e.ttftMs)),
    el('td', { title: e.code ?? '' }, badge(e.code != null ? `${e.outcome}: ${e.code}` : e.outcome, e.outcome)),
    el('td', { title: e.reasons.join(', ') }, e.strategy),
    el('td', { class: 'num' }, ms(e.durationMs))))
  body.replaceChildren(...rows)
  document.getElementById('requests-empty').hidden = rows.length > 0
}

/** A dot from the request's entry to the host that served it (a pulse when served locally). */
function animateFlow (e) {
  const flows = document.querySelector('#topology g.flows')
  const from = state.positions.get(e.entry)
  const to = e.target != null ? state.positions.get(e.target) : undefined
  if (flows == null || from == null || to == null) return
  if (e.target === e.entry) {
    const ring = svg('circle', { class: 'pulse', cx: to.x, cy: to.y, r: state.nodeRadius })
    flows.append(ring)
    ring.animate([{ opacity: 1, r: state.nodeRadius }, { opacity: 0, r: state.nodeRadius * 1.8 }], { duration: FLOW_MS }).onfinish = () => { ring.remove() }
    return
  }
  const dot = svg('circle', { class: 'flow', r: 6, cx: 0, cy: 0 })
  flows.append(dot)
  dot.animate([{ transform: `translate(${from.x}px, ${from.y}px)` }, { transform: `translate(${to.x}px, ${to.y}px)` }], { duration: FLOW_MS, easing: 'ease-in-out' }).onfinish = () => { dot.remove() }
}

function render () {
  const v = state.view
  if (v == null || !Array.isArray(v.nodes)) return
  renderHeader(v)
  renderTopology(v)
  renderHosts(v)
  renderPlacements(v)
  renderRequests()
}

function connect () {
  // the API key, when the agent needs one, comes in the page's fragment (/ui#key=...): it is
  // never sent with the page's own request, only to the event stream that needs it
  const key = new URLSearchParams(location.hash.slice(1)).get('key')
  const events = new EventSource(`/ui/events${key != null && key !== '' ? `?key=${encodeURIComponent(key)}` : ''}`)
  const conn = document.getElementById('conn')
  events.onopen = () => { conn.dataset.state = 'open'; conn.textContent = 'live' }
  events.onerror = () => { conn.dataset.state = 'error'; conn.textContent = events.readyState === EventSource.CLOSED ? 'disconnected (reload)' : 'reconnecting…' }
  events.addEventListener('view', (m) => {
    state.view = JSON.parse(m.data)
    render()
  })
  events.addEventListener('request', (m) => {
    const e = JSON.parse(m.data)
    if (state.requests.some((r) => r.id === e.id && r.at === e.at)) return
    state.requests.unshift(e)
    if (state.requests.length > MAX_REQUESTS) state.requests.length = MAX_REQUESTS
    renderRequests()
    animateFlow(e)
  })
}

connect()
window.addEventListener('resize', () => { render() })
