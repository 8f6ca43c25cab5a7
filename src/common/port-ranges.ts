// Port lists of the config ("443", "1025-65535"): which ports a proxy
// request or tunnel may go to.

export type PortRange = readonly [low: number, high: number];

// Throws an Error naming the bad entry.
export function parsePortRanges(list: readonly string[]): PortRange[] {
  return list.map(parsePortRange);
}

export function parsePortRange(s: string): PortRange {
  const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(s.trim());
  const low = m ? Number(m[1]) : NaN;
  const high = m?.[2] !== undefined ? Number(m[2]) : low;
  if (!m || low < 1 || high > 65535 || low > high) throw new Error(`${JSON.stringify(s)} is not a port or a port range (1-65535)`);
  return [low, high];
}

export function inPortRanges(ranges: readonly PortRange[], port: number): boolean {
  return ranges.some(([low, high]) => port >= low && port <= high);
}

// "HOST:PORT", "HOST:LOW-HIGH" or "[v6]:PORT" (proxy.allowLocal).
export function parseHostPorts(s: string): { host: string; ports: PortRange } {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):([\d-]+)$/.exec(s.trim());
  if (!m) throw new Error(`${JSON.stringify(s)} is not HOST:PORT or HOST:LOW-HIGH`);
  return { host: (m[1] ?? m[2]!).toLowerCase(), ports: parsePortRange(m[3]!) };
}
