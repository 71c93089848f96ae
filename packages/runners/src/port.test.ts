import { describe, expect, it } from 'vitest'
import { PortPicker } from './port.js'

describe('PortPicker', () => {
  it('hands out distinct ports to picks at once, and holds each until released', async () => {
    const ports = new PortPicker()
    const picked = await Promise.all(Array.from({ length: 20 }, async () => await ports.pick()))
    expect(new Set(picked).size).toBe(picked.length)
    expect(ports.size).toBe(picked.length)
    for (const p of picked) ports.release(p)
    expect(ports.size).toBe(0)
  })
})
