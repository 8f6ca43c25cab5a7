import type { Peer } from "./peer-manager.js";

// A set of peers that can also be read by position, so parent selection can
// draw random peers of a big task without walking (or copying) all of them.
// Removal swaps the last peer into the hole: order is not kept.
export class PeerPool implements Iterable<Peer> {
  private readonly list: Peer[] = [];
  private readonly pos = new Map<Peer, number>();

  get size(): number {
    return this.list.length;
  }

  // Read-only view by position; valid until the next add or delete.
  get items(): readonly Peer[] {
    return this.list;
  }

  has(peer: Peer): boolean {
    return this.pos.has(peer);
  }

  add(peer: Peer): void {
    if (this.pos.has(peer)) return;
    this.pos.set(peer, this.list.length);
    this.list.push(peer);
  }

  delete(peer: Peer): boolean {
    const i = this.pos.get(peer);
    if (i === undefined) return false;
    this.pos.delete(peer);
    const last = this.list.pop()!;
    if (last !== peer) {
      this.list[i] = last;
      this.pos.set(last, i);
    }
    return true;
  }

  [Symbol.iterator](): Iterator<Peer> {
    return this.list[Symbol.iterator]();
  }
}
