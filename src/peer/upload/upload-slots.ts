// The upload slots of one upload server: at most `total` piece uploads
// stream at once, and at most `perAddress` of them to one remote address, so
// a client that stops reading cannot hold every slot until its connections
// time out. Requests over either cap wait in line (FIFO, skipping a waiter
// whose address already holds its share) rather than bouncing: a bounce
// costs both sides a round trip and leaves the slot idle until someone
// retries; a wait costs nothing, and the child counts it in this parent's
// measured speed, so a crowded parent gets fewer requests. Only a long line
// (more than `queuePerSlot` per slot, in all or for one address) or a long
// wait gets "busy".

export interface SlotOptions {
  total: number;
  perAddress: number;
  waitMs: number;
  queuePerSlot: number;
}

interface Waiter {
  address: string;
  // The request's client went away: its place in line is given up.
  gone: () => boolean;
  give: (slot: boolean) => void;
}

export class UploadSlots {
  active = 0;
  private readonly held = new Map<string, number>();
  private readonly waiting = new Map<string, number>();
  private readonly waiters: Waiter[] = [];

  constructor(private readonly o: SlotOptions) {}

  // Resolves true with a slot counted as the caller's (give it back with
  // release), false when the line is too long or the wait too long.
  acquire(address: string, gone: () => boolean): Promise<boolean> {
    if (this.fits(address)) {
      this.take(address);
      return Promise.resolve(true);
    }
    const { total, perAddress, queuePerSlot, waitMs } = this.o;
    if (this.waiters.length >= total * queuePerSlot || (this.waiting.get(address) ?? 0) >= perAddress * queuePerSlot) return Promise.resolve(false);
    return new Promise((resolve) => {
      const w: Waiter = {
        address,
        gone,
        give: (slot) => {
          clearTimeout(timer);
          bump(this.waiting, address, -1);
          resolve(slot);
        },
      };
      const timer = setTimeout(() => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) this.waiters.splice(i, 1);
        w.give(false);
      }, waitMs);
      bump(this.waiting, address, 1);
      this.waiters.push(w);
    });
  }

  release(address: string): void {
    this.active--;
    bump(this.held, address, -1);
    this.handOver();
  }

  // Everyone waiting leaves the line without a slot (the daemon drains).
  refuseWaiting(): void {
    for (const w of this.waiters.splice(0)) w.give(false);
  }

  private fits(address: string): boolean {
    return this.active < this.o.total && (this.held.get(address) ?? 0) < this.o.perAddress;
  }

  private take(address: string): void {
    this.active++;
    bump(this.held, address, 1);
  }

  private handOver(): void {
    for (let i = 0; i < this.waiters.length && this.active < this.o.total; ) {
      const w = this.waiters[i]!;
      if (w.gone()) {
        this.waiters.splice(i, 1);
        w.give(false);
      } else if (this.fits(w.address)) {
        this.waiters.splice(i, 1);
        this.take(w.address);
        w.give(true);
      } else i++;
    }
  }
}

function bump(m: Map<string, number>, key: string, by: number): void {
  const n = (m.get(key) ?? 0) + by;
  if (n <= 0) m.delete(key);
  else m.set(key, n);
}
