import { HostManager, type Host } from "./host-manager.js";
import { PeerManager, Peer } from "./peer-manager.js";
import { TaskManager, type Task } from "./task-manager.js";

// The three in-memory tables plus the operations that must keep them
// consistent with each other (task/host membership, the children index).
export class ResourceStore {
  readonly hosts = new HostManager();
  readonly tasks = new TaskManager();
  readonly peers = new PeerManager();

  // Creates a peer; an existing peer with the same id (a reconnect) is replaced.
  addPeer(task: Task, host: Host, peerId: string, now: number): { peer: Peer; replaced: Peer | undefined } {
    const replaced = this.peers.get(peerId);
    if (replaced) this.detachPeer(replaced);
    const peer = new Peer(peerId, task.id, host.id, now);
    this.peers.set(peer);
    task.peers.add(peer.id);
    task.updatedAt = now;
    host.peers.add(peer.id);
    return { peer, replaced };
  }

  // Removes a peer from every table. Returns false if it was already gone.
  detachPeer(peer: Peer): boolean {
    if (!this.peers.delete(peer)) return false;
    this.clearCandidates(peer);
    const task = this.tasks.get(peer.taskId);
    if (task) {
      task.peers.delete(peer.id);
      task.backToSourcePeers.delete(peer.id);
      task.waiting.delete(peer.id);
    }
    this.hosts.get(peer.hostId)?.peers.delete(peer.id);
    peer.waitingSince = undefined;
    return true;
  }

  // Active peers of the task that hold `parentId` among their candidates.
  childrenOf(task: Task, parentId: string): Peer[] {
    const out: Peer[] = [];
    for (const id of task.peers) {
      const p = this.peers.get(id);
      if (p && p.candidates.has(parentId)) out.push(p);
    }
    return out;
  }

  taskPeers(task: Task): Peer[] {
    const out: Peer[] = [];
    for (const id of task.peers) {
      const p = this.peers.get(id);
      if (p) out.push(p);
    }
    return out;
  }

  setCandidates(child: Peer, parents: readonly Peer[]): void {
    this.clearCandidates(child);
    for (const p of parents) {
      child.candidates.set(p.id, p.hostId);
      this.hosts.get(p.hostId)?.children.add(child.id);
    }
  }

  // Adds parents to the child's current candidates (the peer merges lists).
  addCandidates(child: Peer, parents: readonly Peer[]): void {
    for (const p of parents) {
      child.candidates.set(p.id, p.hostId);
      this.hosts.get(p.hostId)?.children.add(child.id);
    }
  }

  dropCandidate(child: Peer, parentId: string): void {
    const hostId = child.candidates.get(parentId);
    if (hostId === undefined) return;
    child.candidates.delete(parentId);
    for (const h of child.candidates.values()) if (h === hostId) return;
    this.hosts.get(hostId)?.children.delete(child.id);
  }

  clearCandidates(child: Peer): void {
    for (const hostId of child.candidates.values()) this.hosts.get(hostId)?.children.delete(child.id);
    child.candidates.clear();
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
