import { homedir, userInfo } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { STOP_HARD_LIMIT_MS } from '@llmesh/agent'
import { resolveUpConfig } from './commands.js'
import type { CliIo } from './io.js'
import { terminalSafeJson } from './terminal.js'
import { UsageError } from './usage-error.js'
import {
  installService, serviceFile, serviceManagerOf, serviceEnv, serviceStatus, serviceStopTimeoutMs, serviceText, uninstallService,
  type ServiceScope, type ServiceSpec, type ServiceTarget
} from './service.js'

/** The config file a service runs with when --config is not given. */
function defaultServiceConfig (scope: ServiceScope): string {
  if (scope === 'system') return '/etc/llmesh/config.json'
  const xdg = process.env['XDG_CONFIG_HOME']
  return join(xdg != null && xdg !== '' ? xdg : join(homedir(), '.config'), 'llmesh', 'config.json')
}

/** `llmesh service install|uninstall|status`: the unit from service.ts, written and enabled here. */
export async function serviceCommand (args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    strict: true,
    allowPositionals: true,
    options: { user: { type: 'boolean' }, system: { type: 'boolean' }, 'dry-run': { type: 'boolean' }, config: { type: 'string' }, json: { type: 'boolean' } }
  })
  const [sub, ...more] = positionals
  if ((sub !== 'install' && sub !== 'uninstall' && sub !== 'status') || more.length > 0) throw new UsageError("expected 'service install', 'service uninstall' or 'service status'")
  if (values.user === true && values.system === true) throw new UsageError('--user and --system: give one')
  const uid = process.getuid?.() ?? -1
  const scope: ServiceScope = values.system === true || (values.user !== true && uid === 0) ? 'system' : 'user'
  const manager = serviceManagerOf(process.platform)
  const target: ServiceTarget = { manager, scope, file: serviceFile(manager, scope, homedir()) }
  const json = values.json === true
  if (sub === 'status') {
    const st = await serviceStatus(target, uid)
    io.stdout(json ? `${terminalSafeJson(st)}\n` : st.installed ? `${manager} ${scope} service at ${st.file}: ${st.enabled}, ${st.active}\n` : `no ${manager} ${scope} service installed (${st.file})\n`)
    return 0
  }
  if (sub === 'uninstall') {
    if (values['dry-run'] === true) {
      io.stdout(json ? `${terminalSafeJson({ ...target, dryRun: true })}\n` : `would stop and disable the ${scope} service and remove ${target.file}\n`)
      return 0
    }
    const done = await uninstallService(target, uid)
    io.stdout(json ? `${terminalSafeJson(done)}\n` : done.removed ? `removed ${done.file}${done.ran.length > 0 ? ` (${done.ran.join('; ')})` : ''}\n` : `no service at ${done.file}: nothing to do\n`)
    return 0
  }
  const config = resolve(values.config ?? defaultServiceConfig(scope))
  // a unit that cannot start is not installed: the config goes through what 'up' checks
  const parsed = await resolveUpConfig({ config }, { dryRun: true })
  const sudoUser = process.env['SUDO_USER']
  const spec: ServiceSpec = {
    node: process.execPath,
    bin: resolve(process.argv[1] ?? 'llmesh'),
    config,
    scope,
    ...(scope === 'system' ? (sudoUser != null && sudoUser !== '' ? { user: sudoUser } : uid !== 0 ? { user: userInfo().username } : {}) : {}),
    env: serviceEnv(process.env),
    stopTimeoutMs: serviceStopTimeoutMs(parsed.shutdownGraceMs, STOP_HARD_LIMIT_MS),
    ...(manager === 'launchd' ? { logFile: scope === 'system' ? '/Library/Logs/llmesh.log' : join(homedir(), 'Library', 'Logs', 'llmesh.log') } : {})
  }
  const text = serviceText(manager, spec)
  if (values['dry-run'] === true) {
    io.stdout(json ? `${terminalSafeJson({ ...target, text })}\n` : text)
    return 0
  }
  const done = await installService(target, text, uid)
  io.stdout(json
    ? `${terminalSafeJson(done)}\n`
    : `wrote ${done.file} and ran: ${done.ran.join('; ')}\n` +
      (manager === 'systemd' && scope === 'user' ? "a user service runs while you are logged in; to run it from boot: loginctl enable-linger\n" : ''))
  return 0
}
