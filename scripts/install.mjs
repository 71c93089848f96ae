#!/usr/bin/env node
// Puts `llmesh` on the PATH from this clone: builds the workspace, deploys the CLI with its
// production dependencies (workspace packages included) into a directory of its own, and
// installs that directory globally with npm (`npm install -g DIR`: a link in npm's global
// prefix, so `npm_config_prefix` / `npm config set prefix` decide where `llmesh` lands).
//
// Why a deploy rather than `npm link` of the clone: the installed `llmesh` needs nothing from
// the clone, so moving or deleting the clone, `git pull` or a rebuild half done never breaks a
// running service; it changes only when this script runs again. Why not `npm install -g` of
// packed tarballs: the workspace packages are private and unpublished, so npm would look for
// them on the registry; `pnpm deploy` resolves them from the workspace instead.
//
//   node scripts/install.mjs [--dir DIR] [--skip-build]
//     --dir DIR      where deploys go (default ${XDG_DATA_HOME:-~/.local/share}/llmesh/cli); each
//                    install gets a new subdirectory, the two newest are kept (the one a running
//                    service may still use, and the new one)
//     --skip-build   use the workspace as it is built (no pnpm install, no tsc -b)
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, readdirSync, realpathSync, rmSync, statSync } from 'node:fs'
import { homedir } from 'node:os'
import { delimiter, dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

/** Deploys kept in --dir: the newest (just installed) and the one before it (a service may still run it). */
const KEEP_DEPLOYS = 2

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const { values } = parseArgs({ options: { dir: { type: 'string' }, 'skip-build': { type: 'boolean' } } })
const xdg = process.env.XDG_DATA_HOME
const base = resolve(values.dir ?? join(xdg != null && xdg !== '' ? xdg : join(homedir(), '.local', 'share'), 'llmesh', 'cli'))

function step (what, cmd, args, options = {}) {
  process.stderr.write(`install: ${what}\n`)
  const r = spawnSync(cmd, args, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'], ...options })
  if (r.status !== 0) {
    process.stderr.write(`install: '${[cmd, ...args].join(' ')}' failed (${r.error?.message ?? `exit ${r.status}`})\n`)
    process.exit(1)
  }
}

const pnpm = ['npx', ['-y', 'pnpm@10']]
// run from under another npx (`npx -p node@22 ...`), the inner npx would take that one's
// package for its own and look for a command named pnpm@10
const npxEnv = { ...process.env }
delete npxEnv.npm_config_package
if (values['skip-build'] !== true) {
  step('installing the workspace (pnpm)', pnpm[0], [...pnpm[1], 'install', '--frozen-lockfile'], { env: npxEnv })
  step('building (tsc -b)', pnpm[0], [...pnpm[1], 'exec', 'tsc', '-b'], { env: npxEnv })
}
if (!existsSync(join(root, 'packages', 'cli', 'dist', 'bin.js'))) {
  process.stderr.write('install: packages/cli is not built; run without --skip-build\n')
  process.exit(1)
}

const { version } = JSON.parse(readFileSync(join(root, 'packages', 'cli', 'package.json'), 'utf8'))
let commit = 'local'
try {
  commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
} catch {}
const dir = join(base, `${version}-${commit}-${Date.now().toString(36)}`)
mkdirSync(base, { recursive: true })
step(`deploying the CLI and its production dependencies to ${dir}`, pnpm[0], [...pnpm[1], '--filter', 'llmesh', 'deploy', '--prod', '--legacy', '--prefer-offline', dir], { stdio: ['ignore', 'ignore', 'inherit'], env: npxEnv })

process.stderr.write('install: npm install -g (npm\'s global prefix)\n')
const npm = spawnSync('npm', ['install', '-g', '--no-audit', '--no-fund', dir], { encoding: 'utf8' })
if (npm.status !== 0) {
  const prefix = spawnSync('npm', ['prefix', '-g'], { encoding: 'utf8' }).stdout?.trim()
  process.stderr.write(npm.stderr)
  process.stderr.write(/EACCES|permission denied/i.test(npm.stderr)
    ? `install: npm's global prefix ${prefix} is not writable by you: run this as root, or use a prefix you own:\n` +
      '  npm config set prefix ~/.local   (and have ~/.local/bin on your PATH)\n'
    : 'install: npm install -g failed\n')
  rmSync(dir, { recursive: true, force: true })
  process.exit(1)
}

const prefix = spawnSync('npm', ['prefix', '-g'], { encoding: 'utf8' }).stdout.trim()
const bin = process.platform === 'win32' ? join(prefix, 'llmesh.cmd') : join(prefix, 'bin', 'llmesh')
const check = spawnSync(bin, ['--version'], { encoding: 'utf8' })
if (check.status !== 0 || check.stdout.trim() !== version) {
  process.stderr.write(`install: ${bin} --version did not answer ${version}: ${check.stderr ?? check.error?.message}\n`)
  process.exit(1)
}

// the older deploys, but the newest KEEP_DEPLOYS (and never the one just installed)
const deploys = readdirSync(base).map((name) => join(base, name))
  .filter((p) => p !== dir && existsSync(join(p, 'package.json')))
  .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)
for (const old of deploys.slice(KEEP_DEPLOYS - 1)) rmSync(old, { recursive: true, force: true })

const onPath = (process.env.PATH ?? '').split(delimiter).some((p) => p !== '' && resolve(p) === dirname(bin))
process.stdout.write(`llmesh ${version} installed: ${bin} -> ${realpathSync(bin)}\n`)
if (!onPath) process.stdout.write(`note: ${dirname(bin)} is not on your PATH; add it to run 'llmesh'\n`)
