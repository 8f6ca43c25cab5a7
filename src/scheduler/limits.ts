import { DamselflyError } from "../common/errors.js";
import type { Registrant } from "./access.js";
import type { Host } from "./resources/host-manager.js";
import type { ResourceStore } from "./resources/resource-store.js";
import type { Task } from "./resources/task-manager.js";

export interface Limits {
  readonly hostsPerRegistrant: number;
  readonly tasksPerRegistrant: number;
  readonly peersPerRegistrant: number;
}

const exceeded = (message: string) => new DamselflyError("DF_ERR_LIMIT_EXCEEDED", message);

// What one registrant makes the scheduler hold, bounded: its hosts, the
// peers on them, and the tasks its peers brought in. A registrant is the
// host's (access.ts): a certificate identity with TLS, a remote address
// without; hosts of loopback callers without TLS are not counted.
export class RegistrantLimits {
  private readonly hostsOf = new Map<string, Set<Host>>();
  private readonly tasksOf = new Map<string, number>();

  // `limits` is read at each check: the manager may change the config.
  constructor(
    store: ResourceStore,
    private readonly limits: () => Limits,
  ) {
    store.hosts.onRemove((h) => this.hostRemoved(h));
    store.tasks.onDelete((t) => this.taskDeleted(t));
  }

  // Before a host announcement: a new host must fit the registrant's cap.
  admitHost(r: Registrant, existing: Host | undefined): void {
    if (existing || r.key === undefined) return;
    const cap = this.limits().hostsPerRegistrant;
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
    const key = host.registrant;
    if (key === undefined) return;
    const { peersPerRegistrant, tasksPerRegistrant } = this.limits();
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
