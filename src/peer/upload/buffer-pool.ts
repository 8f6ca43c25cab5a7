// Fixed-size read buffers reused across piece uploads: serving gigabytes
// would otherwise allocate a fresh buffer per chunk and leave the garbage
// collector (and RSS) to catch up.
export class BufferPool {
  private readonly free: Buffer[] = [];
  private readonly owned = new WeakSet<ArrayBufferLike>();

  constructor(readonly size: number, private readonly keep: number) {}

  get(): Buffer {
    const b = this.free.pop();
    if (b) return b;
    const fresh = Buffer.allocUnsafeSlow(this.size);
    this.owned.add(fresh.buffer);
    return fresh;
  }

  // Returns the pool buffer behind `view` (any subarray of one handed out by
  // get()); views of other memory are ignored.
  release(view: Uint8Array): void {
    if (!this.owned.has(view.buffer) || this.free.length >= this.keep) return;
    this.free.push(Buffer.from(view.buffer, 0, this.size));
  }

  // Only once the socket is done with it.
  put(buf: Buffer): void {
    if (this.free.length < this.keep && buf.length === this.size) this.free.push(buf);
  }
}
