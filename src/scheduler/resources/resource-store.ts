import type { schedulerv1 } from "../../protocol/index.js";
import { HostManager, type Host, type HostDefaults } from "./host-manager.js";
import { PeerManager, Peer } from "./peer-manager.js";
import { TaskManager, type Task } from "./task-manager.js";

export interface StoreOptions {
  // The scheduler's candidateParentLimit (tasks index peers short of it).
  candidateParentLimit?: number;
}

// The three in-memory tables plus the operations that must keep them
// consistent with each other (task/host membership, the children index, the
// tasks' peer indexes).
export class ResourceStore {
  readonly hosts = new HostManager();
  readonly tasks: TaskManager;
  readonly peers = new PeerManager();

  constructor(opts: StoreOptions = {}) {
    this.tasks = new TaskManager(opts.candidateParentLimit);
  }

  // HostManager.upsert, plus the tasks' seed-peer index when the host turns
  // into a seed (or stops being one).
  upsertHost(msg: schedulerv1.Host, intervalSeconds: number, now: number, defaults: HostDefaults): { host: Host; created: boolean } {
    const wasSeed = this.hosts.get(msg.id)?.isSeed ?? false;
    const r = this.hosts.upsert(msg, intervalSeconds, now, defaults);
    if (r.host.isSeed !== wasSeed) {
      for (const id of r.host.peers) {
        const p = this.peers.get(id);
        const task = p && this.tasks.get(p.taskId);
        if (!p || !task) continue;
        if (r.host.isSeed) task.seedPeers.add(p);
        else task.seedPeers.delete(p);
      }
    }
    return r;
  }

  // Creates a peer; an existing peer with the same id (a reconnect) is replaced.
  addPeer(task: Task, host: Host, peerId: string, now: number): { peer: Peer; replaced: Peer | undefined } {
    const replaced = this.peers.get(peerId);
    if (replaced) this.detachPeer(replaced);
    const peer = new Peer(peerId, task.id, host.id, now);
    this.peers.set(peer);
    task.attach(peer, host.isSeed);
    task.updatedAt = now;
    host.peers.add(peer.id);
    return { peer, replaced };
  }

  // Removes a peer from every table. Returns false if it was already gone.
  detachPeer(peer: Peer): boolean {
    if (!this.peers.delete(peer)) return false;
    this.clearCandidates(peer);
    const task = this.tasks.get(peer.taskId);
    task?.detach(peer);
    this.hosts.get(peer.hostId)?.peers.delete(peer.id);
    peer.waitingSince = undefined;
    return true;
  }

  // Active peers of the task that hold `parentId` among their candidates.
  childrenOf(task: Task, parentId: string): Peer[] {
    const out: Peer[] = [];
    for (const p of task.peers) if (p.candidates.has(parentId)) out.push(p);
    return out;
  }

  // A copy: callers may add or remove peers while they walk it.
  taskPeers(task: Task): Peer[] {
    return [...task.peers];
  }

  setCandidates(child: Peer, parents: readonly Peer[]): void {
    this.clearCandidates(child);
    this.addCandidates(child, parents);
  }

  // Adds parents to the child's current candidates (the peer merges lists).
  addCandidates(child: Peer, parents: readonly Peer[]): void {
    for (const p of parents) {
      child.setCandidate(p.id, p.hostId);
      this.hosts.get(p.hostId)?.children.add(child.id);
    }
    child.index?.peerChanged(child);
  }

  dropCandidate(child: Peer, parentId: string): void {
    const hostId = child.candidates.get(parentId);
    if (hostId === undefined) return;
    child.deleteCandidate(parentId);
    child.index?.peerChanged(child);
    for (const h of child.candidates.values()) if (h === hostId) return;
    this.hosts.get(hostId)?.children.delete(child.id);
  }

  clearCandidates(child: Peer): void {
    if (child.candidates.size === 0) return;
    for (const hostId of child.candidates.values()) this.hosts.get(hostId)?.children.delete(child.id);
    child.clearCandidateList();
    child.index?.peerChanged(child);
  }

  // Removes a host with all its peers; returns the removed peers.
  removeHost(host: Host): Peer[] {
    const removed: Peer[] = [];
    for (const id of [...host.peers]) {
      const p = this.peers.get(id);
      if (p && this.detachPeer(p)) removed.push(p);
    }
    this.hosts.delete(host.id);
    return removed;
  }
}
