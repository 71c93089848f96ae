import { describe, expect, it } from 'vitest'
import plist from 'plist'
import { STOP_HARD_LIMIT_MS } from '@llmesh/agent'
import { launchdPlist, serviceCommands, serviceEnv, serviceFile, serviceStopTimeoutMs, systemdUnit, type ServiceSpec } from './service.js'

const spec: ServiceSpec = {
  node: '/usr/bin/node',
  bin: '/usr/local/bin/llmesh',
  config: '/etc/llmesh/my config.json',
  scope: 'system',
  user: 'lab',
  env: { PATH: '/opt/llama.cpp/bin:/usr/bin', LLMESH_CACHE_DIR: '/srv/cache 100%' },
  stopTimeoutMs: serviceStopTimeoutMs(5000, STOP_HARD_LIMIT_MS)
}

/** The unit's `Key=value` lines by section. */
function sections (unit: string): Record<string, string[]> {
  const out: Record<string, string[]> = {}
  let at = ''
  for (const line of unit.split('\n')) {
    const head = /^\[(\w+)\]$/.exec(line)
    if (head != null) out[at = head[1]!] = []
    else if (line !== '') out[at]!.push(line)
  }
  return out
}

describe('systemd unit', () => {
  it('runs llmesh up with the config, restarts on failure, stops with SIGTERM after the agent\'s own limit', () => {
    const s = sections(systemdUnit(spec))
    expect(Object.keys(s)).toEqual(['Unit', 'Service', 'Install'])
    expect(s['Service']).toContain('ExecStart="/usr/bin/node" "/usr/local/bin/llmesh" "up" "--config" "/etc/llmesh/my config.json"')
    expect(s['Service']).toContain('Restart=on-failure')
    expect(s['Service']).toContain('KillSignal=SIGTERM')
    // SIGTERM to the agent only: it drains its requests and stops its runners itself
    expect(s['Service']).toContain('KillMode=mixed')
    const stop = Number(s['Service']!.find((l) => l.startsWith('TimeoutStopSec='))!.split('=')[1])
    expect(stop * 1000).toBeGreaterThan(5000 + STOP_HARD_LIMIT_MS)
    expect(s['Service']).toContain('User=lab')
    // % and $ would be specifiers and variables to systemd: doubled, so the value arrives as written
    expect(s['Service']).toContain('Environment="LLMESH_CACHE_DIR=/srv/cache 100%%"')
    expect(s['Install']).toEqual(['WantedBy=multi-user.target'])
  })

  it('a user unit has no User= and is wanted by default.target', () => {
    const s = sections(systemdUnit({ ...spec, scope: 'user' }))
    expect(s['Service']!.some((l) => l.startsWith('User='))).toBe(false)
    expect(s['Install']).toEqual(['WantedBy=default.target'])
  })

  it('refuses a value with a line break (it would start a new directive)', () => {
    expect(() => systemdUnit({ ...spec, config: '/tmp/x\nExecStartPre=/bin/evil' })).toThrow(/line break/)
  })
})

describe('launchd plist', () => {
  it('parses as a property list with the keys launchd needs', () => {
    const text = launchdPlist({ ...spec, logFile: '/Library/Logs/llmesh.log' })
    expect(text).toMatch(/^<\?xml version="1.0" encoding="UTF-8"\?>\n<!DOCTYPE plist PUBLIC "-\/\/Apple\/\/DTD PLIST 1.0\/\/EN"/)
    const job = plist.parse(text) as Record<string, unknown>
    expect(job).toMatchObject({
      Label: 'llmesh.agent',
      ProgramArguments: ['/usr/bin/node', '/usr/local/bin/llmesh', 'up', '--config', '/etc/llmesh/my config.json'],
      RunAtLoad: true,
      KeepAlive: { SuccessfulExit: false },
      UserName: 'lab',
      EnvironmentVariables: spec.env,
      StandardErrorPath: '/Library/Logs/llmesh.log'
    })
    expect(job['ExitTimeOut']).toBe(Math.ceil(spec.stopTimeoutMs / 1000))
    for (const key of Object.keys(job)) {
      expect(['Label', 'ProgramArguments', 'EnvironmentVariables', 'RunAtLoad', 'KeepAlive', 'ThrottleInterval', 'ExitTimeOut', 'ProcessType', 'UserName', 'StandardOutPath', 'StandardErrorPath']).toContain(key)
    }
  })

  it('escapes what XML would misread', () => {
    const job = plist.parse(launchdPlist({ ...spec, config: '/tmp/<a & b>.json' })) as { ProgramArguments: string[] }
    expect(job.ProgramArguments[4]).toBe('/tmp/<a & b>.json')
  })
})

describe('service plumbing', () => {
  it('keeps PATH and LLMESH_* but never the API key', () => {
    expect(serviceEnv({ PATH: '/bin', HOME: '/root', LLMESH_LLAMA_SERVER: '/x', LLMESH_API_KEY: 'secret', LLMESH_EMPTY: '' })).toEqual({ LLMESH_LLAMA_SERVER: '/x', PATH: '/bin' })
  })

  it('puts files where each manager reads them and enables with its own commands', () => {
    expect(serviceFile('systemd', 'user', '/home/lab')).toBe('/home/lab/.config/systemd/user/llmesh.service')
    expect(serviceFile('systemd', 'system', '/root')).toBe('/etc/systemd/system/llmesh.service')
    expect(serviceFile('launchd', 'user', '/Users/lab')).toBe('/Users/lab/Library/LaunchAgents/llmesh.agent.plist')
    expect(serviceCommands({ manager: 'systemd', scope: 'user', file: 'f' }, 1000).enable).toEqual([['systemctl', '--user', 'daemon-reload'], ['systemctl', '--user', 'enable', 'llmesh.service'], ['systemctl', '--user', 'restart', 'llmesh.service']])
    expect(serviceCommands({ manager: 'launchd', scope: 'user', file: 'f' }, 501)).toMatchObject({ unload: [['launchctl', 'bootout', 'gui/501/llmesh.agent']], enable: [['launchctl', 'bootstrap', 'gui/501', 'f']] })
  })
})
