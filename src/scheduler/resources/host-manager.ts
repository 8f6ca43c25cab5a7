import { HostType, type schedulerv1 } from "../../protocol/index.js";

export interface HostDefaults {
  normalUploadSlots: number;
  seedUploadSlots: number;
  // The longest announce interval a host may declare: one that says "every
  // year" must still expire within a bounded time.
  limits?: { readonly maxAnnounceInterval: number };
}

// A daemon (normal or seed) as last announced, plus what the scheduler learnt
// about it: which peers live on it, which children currently use it, and how
// fast it served pieces.
export class Host {
  readonly id: string;
  hostname = "";
  ip = "";
  uploadPort = 0;
  apiPort = 0;
  type: HostType = HostType.NORMAL;
  uploadSlots = 0;
  concurrentUploads = 0;
  uploadBytesTotal = 0n;
  idc = "";
  location = "";
  lastSeen = 0;
  // Announce interval the daemon told us, in ms (0: not given), clamped.
  intervalMs = 0;
  // With TLS: the certificate identity (role/name) that announced it first;
  // only it may speak for the host, whatever certificate it rotates to.
  owner: string | undefined;
  // Whom the host counts against (access.ts): the owner with TLS, the remote
  // address without; undefined for a loopback caller without TLS.
  registrant: string | undefined;
  // Peers (any task) that live on this host.
  readonly peers = new Set<string>();
  // Child peers that hold a peer of this host among their current candidates:
  // the load measure checked against uploadSlots.
  readonly children = new Set<string>();
  // EWMA of bytes per microsecond children measured from this host (0: unknown).
  throughput = 0;

  constructor(id: string) {
    this.id = id;
  }

  get isSeed(): boolean {
    return this.type === HostType.SEED;
  }

  // Free upload capacity in [0, 1], not counting `childId` itself.
  freeSlotRatio(childId?: string): number {
    if (this.uploadSlots <= 0) return 0;
    const load = this.children.size - (childId !== undefined && this.children.has(childId) ? 1 : 0);
    return Math.max(0, this.uploadSlots - load) / this.uploadSlots;
  }

  hasFreeSlot(childId?: string): boolean {
    const load = this.children.size - (childId !== undefined && this.children.has(childId) ? 1 : 0);
    return load < this.uploadSlots;
  }

  recordThroughput(bytes: number, micros: number): void {
    if (bytes <= 0 || micros <= 0) return;
    const sample = bytes / micros;
    this.throughput = this.throughput === 0 ? sample : this.throughput * 0.8 + sample * 0.2;
  }
}

export class HostManager {
  private readonly hosts = new Map<string, Host>();
  // A handful in a cluster of thousands of hosts: seed lookups walk these only.
  private readonly seeds = new Set<Host>();
  // Told of every host removed (it left or timed out): what other parts keep
  // per host (daemon clients) goes with it.
  private readonly removalHooks: Array<(host: Host) => void> = [];

  get(id: string): Host | undefined {
    return this.hosts.get(id);
  }

  get size(): number {
    return this.hosts.size;
  }

  values(): IterableIterator<Host> {
    return this.hosts.values();
  }

  // Inserts or refreshes a host from its announcement. Returns whether it is new.
  upsert(msg: schedulerv1.Host, intervalSeconds: number, now: number, defaults: HostDefaults): { host: Host; created: boolean } {
    let host = this.hosts.get(msg.id);
    const created = host === undefined;
    if (!host) {
      host = new Host(msg.id);
      this.hosts.set(msg.id, host);
    }
    host.hostname = msg.hostname;
    host.ip = msg.ip;
    host.uploadPort = msg.uploadPort;
    host.apiPort = msg.apiPort;
    host.type = msg.type === HostType.SEED ? HostType.SEED : HostType.NORMAL;
    if (host.isSeed) this.seeds.add(host);
    else this.seeds.delete(host);
    host.uploadSlots = msg.uploadSlots > 0 ? msg.uploadSlots : host.isSeed ? defaults.seedUploadSlots : defaults.normalUploadSlots;
    host.concurrentUploads = msg.concurrentUploads;
    host.uploadBytesTotal = msg.uploadBytesTotal;
    host.idc = msg.idc;
    host.location = msg.location;
    const maxMs = defaults.limits?.maxAnnounceInterval ?? Number.POSITIVE_INFINITY;
    host.intervalMs = Math.min(Math.max(0, intervalSeconds) * 1000, maxMs);
    this.touch(host, now);
    return { host, created };
  }

  delete(id: string): boolean {
    const host = this.hosts.get(id);
    if (!host) return false;
    this.seeds.delete(host);
    this.hosts.delete(id);
    for (const hook of this.removalHooks) hook(host);
    return true;
  }

  onRemove(hook: (host: Host) => void): void {
    this.removalHooks.push(hook);
  }

  // The host heard from now: an announce, a cached-task list or any message
  // on one of its peers' streams keeps it alive.
  touch(host: Host, now: number): void {
    host.lastSeen = now;
  }

  // A host is dropped after `timeout` ms of silence, or after three missed
  // announce intervals when the daemon announces less often than that.
  isExpired(host: Host, now: number, timeout: number): boolean {
    return now - host.lastSeen > Math.max(timeout, host.intervalMs * 3);
  }

  // The host by id, unless unknown or expired.
  live(id: string, now: number, timeout: number): Host | undefined {
    const h = this.hosts.get(id);
    return h && !this.isExpired(h, now, timeout) ? h : undefined;
  }

  expired(now: number, timeout: number): Host[] {
    const out: Host[] = [];
    for (const h of this.hosts.values()) if (this.isExpired(h, now, timeout)) out.push(h);
    return out;
  }

  // Live seed hosts the scheduler can call (they gave an API port).
  liveSeeds(now: number, timeout: number): Host[] {
    return this.callable(this.seeds, now, timeout);
  }

  // Every live host the scheduler can call.
  liveDaemons(now: number, timeout: number): Host[] {
    return this.callable(this.hosts.values(), now, timeout);
  }

  private callable(hosts: Iterable<Host>, now: number, timeout: number): Host[] {
    const out: Host[] = [];
    for (const h of hosts) if (h.apiPort > 0 && !this.isExpired(h, now, timeout)) out.push(h);
    return out;
  }
}
