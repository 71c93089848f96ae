import { execFile } from 'node:child_process'
import { access, mkdir, rm, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { promisify } from 'node:util'
import plist from 'plist'
import { LAUNCHD_LABEL, SERVICE_ENV_KEEP, SERVICE_NAME, SERVICE_RESTART_DELAY_S, SERVICE_STOP_MARGIN_MS } from './constants.js'
import { UsageError } from './usage-error.js'

export type ServiceManager = 'systemd' | 'launchd'
export type ServiceScope = 'user' | 'system'

/** What a service runs: `node bin up --config config`, stopped with SIGTERM within stopTimeoutMs. */
export interface ServiceSpec {
  /** absolute path of node */
  node: string
  /** absolute path of the llmesh bin script (the one on PATH: a re-install moves what it points to) */
  bin: string
  /** absolute path of the host's config file */
  config: string
  scope: ServiceScope
  /** the account a system service runs as (its HOME holds the default data dir); unset: root */
  user?: string
  /** environment of the agent (PATH, so it finds llama-server as the shell did; LLMESH_*) */
  env: Record<string, string>
  /** how long the manager waits after SIGTERM before it kills, ms (see serviceStopTimeoutMs) */
  stopTimeoutMs: number
  /** where launchd writes the agent's output (systemd sends it to the journal) */
  logFile?: string
}

/** The stop timeout a service manager needs: the agent's own limit plus SERVICE_STOP_MARGIN_MS. */
export function serviceStopTimeoutMs (shutdownGraceMs: number, stopHardLimitMs: number): number {
  return shutdownGraceMs + stopHardLimitMs + SERVICE_STOP_MARGIN_MS
}

/** The environment a service keeps from `env`: PATH and LLMESH_* (SERVICE_ENV_KEEP). */
export function serviceEnv (env: NodeJS.ProcessEnv): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => SERVICE_ENV_KEEP.test(e[0]) && e[1] != null && e[1] !== '').sort(([a], [b]) => a.localeCompare(b)))
}

/** One word of a systemd command line or assignment: quoted, `\` and `"` escaped, `%` and `$` doubled (no specifiers, no variables). */
function systemdWord (value: string): string {
  if (/[\n\r]/.test(value)) throw new UsageError(`a line break cannot go into a systemd unit: ${JSON.stringify(value)}`)
  return `"${value.replace(/[\\"]/g, (c) => `\\${c}`).replace(/%/g, '%%').replace(/\$/g, '$$$$')}"`
}

/**
 * The systemd unit: restarts the agent on failure; on stop, SIGTERM to the agent alone
 * (KillMode=mixed: its runners keep serving the requests it drains, and it stops them itself),
 * SIGKILL to all that is left only after TimeoutStopSec.
 */
export function systemdUnit (spec: ServiceSpec): string {
  const env = Object.entries(spec.env).map(([k, v]) => `Environment=${systemdWord(`${k}=${v}`)}`)
  return [
    '[Unit]',
    'Description=llmesh agent: this host in the llmesh mesh',
    'Wants=network-online.target',
    'After=network-online.target',
    '',
    '[Service]',
    'Type=simple',
    `ExecStart=${[spec.node, spec.bin, 'up', '--config', spec.config].map(systemdWord).join(' ')}`,
    ...(spec.scope === 'system' && spec.user != null ? [`User=${spec.user}`] : []),
    ...env,
    'Restart=on-failure',
    `RestartSec=${SERVICE_RESTART_DELAY_S}`,
    'KillSignal=SIGTERM',
    'KillMode=mixed',
    `TimeoutStopSec=${Math.ceil(spec.stopTimeoutMs / 1000)}`,
    '',
    '[Install]',
    `WantedBy=${spec.scope === 'system' ? 'multi-user.target' : 'default.target'}`,
    ''
  ].join('\n')
}

/**
 * The launchd job: started at load and at boot/login, restarted when it exits unsuccessfully
 * (KeepAlive.SuccessfulExit false), stopped with SIGTERM and killed only after ExitTimeOut.
 */
export function launchdPlist (spec: ServiceSpec): string {
  const job: plist.PlistObject = {
    Label: LAUNCHD_LABEL,
    ProgramArguments: [spec.node, spec.bin, 'up', '--config', spec.config],
    EnvironmentVariables: spec.env,
    RunAtLoad: true,
    KeepAlive: { SuccessfulExit: false },
    ThrottleInterval: SERVICE_RESTART_DELAY_S,
    ExitTimeOut: Math.ceil(spec.stopTimeoutMs / 1000),
    ProcessType: 'Standard',
    ...(spec.scope === 'system' && spec.user != null ? { UserName: spec.user } : {}),
    ...(spec.logFile != null ? { StandardOutPath: spec.logFile, StandardErrorPath: spec.logFile } : {})
  }
  return `${plist.build(job)}\n`
}

/** Where the unit or plist goes, per manager and scope. */
export function serviceFile (manager: ServiceManager, scope: ServiceScope, home: string): string {
  if (manager === 'systemd') return scope === 'system' ? `/etc/systemd/system/${SERVICE_NAME}.service` : join(home, '.config', 'systemd', 'user', `${SERVICE_NAME}.service`)
  return scope === 'system' ? `/Library/LaunchDaemons/${LAUNCHD_LABEL}.plist` : join(home, 'Library', 'LaunchAgents', `${LAUNCHD_LABEL}.plist`)
}

/** The service manager of `platform`: systemd on Linux, launchd on macOS; none elsewhere. */
export function serviceManagerOf (platform: NodeJS.Platform): ServiceManager {
  if (platform === 'linux') return 'systemd'
  if (platform === 'darwin') return 'launchd'
  throw new UsageError(`llmesh service: no service manager known on ${platform} (systemd on Linux, launchd on macOS)`)
}

/** The text of the service file for `manager`. */
export function serviceText (manager: ServiceManager, spec: ServiceSpec): string {
  return manager === 'systemd' ? systemdUnit(spec) : launchdPlist(spec)
}

export interface ServiceTarget {
  manager: ServiceManager
  scope: ServiceScope
  file: string
}

/**
 * The commands that enable (install) or disable (uninstall) the service, or show its state.
 * `unload` runs before `enable` and may fail (nothing loaded yet); `enable` (re)starts the
 * agent, so an install over an older one runs the new unit and the new `llmesh`.
 */
export function serviceCommands (target: ServiceTarget, uid: number): { unload: string[][], enable: string[][], disable: string[][], status: string[][] } {
  if (target.manager === 'systemd') {
    const ctl = target.scope === 'user' ? ['systemctl', '--user'] : ['systemctl']
    return {
      unload: [],
      enable: [[...ctl, 'daemon-reload'], [...ctl, 'enable', `${SERVICE_NAME}.service`], [...ctl, 'restart', `${SERVICE_NAME}.service`]],
      disable: [[...ctl, 'disable', '--now', `${SERVICE_NAME}.service`]],
      status: [[...ctl, 'is-enabled', `${SERVICE_NAME}.service`], [...ctl, 'is-active', `${SERVICE_NAME}.service`]]
    }
  }
  const domain = target.scope === 'system' ? 'system' : `gui/${uid}`
  return {
    unload: [['launchctl', 'bootout', `${domain}/${LAUNCHD_LABEL}`]],
    enable: [['launchctl', 'bootstrap', domain, target.file]],
    disable: [['launchctl', 'bootout', `${domain}/${LAUNCHD_LABEL}`]],
    status: [['launchctl', 'print', `${domain}/${LAUNCHD_LABEL}`]]
  }
}

const run = promisify(execFile)

async function runAll (commands: string[][]): Promise<Array<{ command: string, ok: boolean, output: string }>> {
  const results = []
  for (const [cmd, ...args] of commands) {
    try {
      const { stdout, stderr } = await run(cmd!, args, { timeout: 30_000 })
      results.push({ command: [cmd, ...args].join(' '), ok: true, output: `${stdout}${stderr}`.trim() })
    } catch (err) {
      const e = err as { stdout?: string, stderr?: string, message: string }
      results.push({ command: [cmd, ...args].join(' '), ok: false, output: `${e.stdout ?? ''}${e.stderr ?? ''}`.trim() || e.message })
    }
  }
  return results
}

/** Writes the service file (directories created) and enables and (re)starts the service; fails on the first command that fails. */
export async function installService (target: ServiceTarget, text: string, uid: number): Promise<{ file: string, ran: string[] }> {
  await mkdir(dirname(target.file), { recursive: true })
  await writeFile(target.file, text, { mode: 0o644 })
  const commands = serviceCommands(target, uid)
  await runAll(commands.unload)
  const ran = []
  for (const r of await runAll(commands.enable)) {
    if (!r.ok) throw new Error(`wrote ${target.file}, but '${r.command}' failed: ${r.output}`)
    ran.push(r.command)
  }
  return { file: target.file, ran }
}

/** Stops and disables the service and removes its file; a service already gone is not an error. */
export async function uninstallService (target: ServiceTarget, uid: number): Promise<{ file: string, removed: boolean, ran: string[] }> {
  const present = await access(target.file).then(() => true, () => false)
  const ran = present ? (await runAll(serviceCommands(target, uid).disable)).map((r) => `${r.command}${r.ok ? '' : ` (failed: ${r.output.split('\n')[0] ?? ''})`}`) : []
  await rm(target.file, { force: true })
  if (present && target.manager === 'systemd') await runAll([[...(target.scope === 'user' ? ['systemctl', '--user'] : ['systemctl']), 'daemon-reload']])
  return { file: target.file, removed: present, ran }
}

export interface ServiceStatus {
  manager: ServiceManager
  scope: ServiceScope
  file: string
  installed: boolean
  /** systemd: is-enabled and is-active; launchd: whether the job is loaded */
  enabled: string
  active: string
}

/** Whether the service file is there and what the service manager says about it. */
export async function serviceStatus (target: ServiceTarget, uid: number): Promise<ServiceStatus> {
  const installed = await access(target.file).then(() => true, () => false)
  if (!installed) return { ...target, installed, enabled: 'not installed', active: 'inactive' }
  const results = await runAll(serviceCommands(target, uid).status)
  const first = (i: number): string => results[i]?.output.split('\n')[0] ?? 'unknown'
  if (target.manager === 'systemd') return { ...target, installed, enabled: first(0) || 'unknown', active: first(1) || 'unknown' }
  const loaded = results[0]?.ok === true
  const state = /\bstate = (\w+)/.exec(results[0]?.output ?? '')?.[1]
  return { ...target, installed, enabled: loaded ? 'loaded' : 'not loaded', active: state ?? (loaded ? 'unknown' : 'inactive') }
}
