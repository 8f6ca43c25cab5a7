import { DamselflyError } from "../common/errors.js";
import type { Registrant } from "./access.js";
import type { Host } from "./resources/host-manager.js";
import type { ResourceStore } from "./resources/resource-store.js";
import type { Task } from "./resources/task-manager.js";

export interface Limits {
  readonly hostsPerRegistrant: number;
  readonly tasksPerRegistrant: number;
  readonly peersPerRegistrant: number;
  readonly peersPerHost: number;
  readonly maxHosts: number;
  readonly maxTasks: number;
  readonly maxPeers: number;
}

const exceeded = (message: string) => new DamselflyError("DF_ERR_LIMIT_EXCEEDED", message);

// What the scheduler holds, bounded: in all (hosts, tasks, peers), per host
// (peers), and per registrant: its hosts, the peers on them, and the tasks
// its peers brought in. A registrant is the host's (access.ts): a
// certificate identity with TLS, a remote address without; hosts of
// loopback callers without TLS count in all and per host only. Every check
// runs before anything is taken, so a refused call leaves nothing behind.
export class RegistrantLimits {
  private readonly hostsOf = new Map<string, Set<Host>>();
  private readonly tasksOf = new Map<string, number>();

  // `limits` is read at each check: the manager may change the config.
  constructor(
    private readonly store: ResourceStore,
    private readonly limits: () => Limits,
  ) {
    store.hosts.onRemove((h) => this.hostRemoved(h));
    store.tasks.onDelete((t) => this.taskDeleted(t));
  }

  // Before a host announcement: a new host must fit the registrant's cap.
  admitHost(r: Registrant, existing: Host | undefined): void {
    if (existing) return;
    const { maxHosts, hostsPerRegistrant: cap } = this.limits();
    if (this.store.hosts.size >= maxHosts) throw exceeded(`the scheduler holds ${maxHosts} hosts (limits.maxHosts)`);
    if (r.key === undefined) return;
    if ((this.hostsOf.get(r.key)?.size ?? 0) >= cap) throw exceeded(`${r.key} already has ${cap} hosts announced (limits.hostsPerRegistrant)`);
  }

  // After it: a new host belongs to the registrant (with TLS, for good).
  hostAnnounced(r: Registrant, host: Host, created: boolean): void {
    if (!created) return;
    host.owner = r.identity ? r.key : undefined;
    host.registrant = r.key;
    if (r.key === undefined) return;
    let set = this.hostsOf.get(r.key);
    if (!set) this.hostsOf.set(r.key, (set = new Set()));
    set.add(host);
  }

  // Before `peers` more peers, bringing `tasks` new tasks, go on `host`.
  admitPeers(host: Host, peers: number, tasks: number): void {
    const { peersPerRegistrant, tasksPerRegistrant, peersPerHost, maxPeers, maxTasks } = this.limits();
    const { store } = this;
    if (store.peers.size + peers > maxPeers)
      throw exceeded(`the scheduler would hold ${store.peers.size + peers} peers; at most ${maxPeers} (limits.maxPeers)`);
    if (store.tasks.size + tasks > maxTasks)
      throw exceeded(`the scheduler would hold ${store.tasks.size + tasks} tasks; at most ${maxTasks} (limits.maxTasks)`);
    if (host.peers.size + peers > peersPerHost) {
      throw exceeded(`host ${host.id} would hold ${host.peers.size + peers} peers; at most ${peersPerHost} (limits.peersPerHost)`);
    }
    const key = host.registrant;
    if (key === undefined) return;
    let held = 0;
    for (const h of this.hostsOf.get(key) ?? []) held += h.peers.size;
    if (held + peers > peersPerRegistrant) throw exceeded(`${key} would hold ${held + peers} peers; at most ${peersPerRegistrant} (limits.peersPerRegistrant)`);
    const created = this.tasksOf.get(key) ?? 0;
    if (created + tasks > tasksPerRegistrant) {
      throw exceeded(`${key} would bring ${created + tasks} tasks; at most ${tasksPerRegistrant} (limits.tasksPerRegistrant)`);
    }
  }

  // A task a peer of `host` brought in counts against its registrant until
  // the task is dropped.
  taskCreated(host: Host, task: Task): void {
    const key = host.registrant;
    if (key === undefined || task.creator !== undefined) return;
    task.creator = key;
    this.tasksOf.set(key, (this.tasksOf.get(key) ?? 0) + 1);
  }

  hostCount(key: string): number {
    return this.hostsOf.get(key)?.size ?? 0;
  }

  taskCount(key: string): number {
    return this.tasksOf.get(key) ?? 0;
  }

  private hostRemoved(h: Host): void {
    const key = h.registrant;
    const set = key === undefined ? undefined : this.hostsOf.get(key);
    if (!set) return;
    set.delete(h);
    if (set.size === 0) this.hostsOf.delete(key!);
  }

  private taskDeleted(t: Task): void {
    const key = t.creator;
    if (key === undefined) return;
    const n = (this.tasksOf.get(key) ?? 1) - 1;
    if (n <= 0) this.tasksOf.delete(key);
    else this.tasksOf.set(key, n);
  }
}
