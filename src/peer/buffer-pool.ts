// Buffers reused across pieces, for every user in the daemon: a fresh buffer
// per chunk or piece costs a page fault per 4 KiB on first touch, an munmap
// when it is collected, and garbage-collector work (external memory counts
// toward its triggers); serving or writing gigabytes would leave the
// collector and RSS to catch up. Users: the upload server's read chunks,
// PieceWriter's staging buffers, a proxied response's chunk buffers.
// See docs/decisions/buffer-pool.md.
export class BufferPool {
  // Idle buffers by size.
  private readonly free = new Map<number, Buffer[]>();
  private readonly owned = new WeakSet<ArrayBufferLike>();
  private idle = 0;
  // Bytes reserve() adds to the cap for now.
  private reserved = 0;

  // `maxIdle`: bytes kept idle at most (beyond what reserve() adds).
  constructor(private readonly maxIdle: number) {}

  get idleBytes(): number {
    return this.idle;
  }

  // A buffer of exactly `size` bytes; its content is whatever it held.
  get(size: number): Buffer {
    const b = this.free.get(size)?.pop();
    if (b) {
      this.idle -= size;
      return b;
    }
    const fresh = Buffer.allocUnsafeSlow(size);
    this.owned.add(fresh.buffer);
    return fresh;
  }

  // Takes back a buffer get() handed out, or any view of one (a subarray),
  // once nothing uses it any more (for a socket write: in its callback).
  // Other memory is ignored. Idle buffers of other sizes make room for it:
  // the sizes in use now are the ones worth keeping.
  put(view: Uint8Array): void {
    const ab = view.buffer;
    if (!this.owned.has(ab)) return;
    const size = ab.byteLength;
    if (!this.makeRoom(size, size)) return;
    const buf = view instanceof Buffer && view.byteOffset === 0 && view.length === size ? view : Buffer.from(ab, 0, size);
    let list = this.free.get(size);
    if (!list) this.free.set(size, (list = []));
    list.push(buf);
    this.idle += size;
  }

  // Lets `count` more buffers of `size` stay idle until the returned
  // function is called: a proxied response cycles a few buffers of its
  // chunk size (up to 4 MiB), which can be larger than the cap.
  reserve(size: number, count: number): () => void {
    const bytes = size * count;
    this.reserved += bytes;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.reserved -= bytes;
      // The reservation's own size goes first.
      this.trim(size, 0);
      this.makeRoom(0, -1);
    };
  }

  // Drops idle buffers of sizes other than `keep` until `bytes` more fit
  // under the cap; false when they cannot.
  private makeRoom(bytes: number, keep: number): boolean {
    const cap = this.maxIdle + this.reserved;
    if (bytes > cap) return false;
    for (const size of this.free.keys()) {
      if (this.idle + bytes <= cap) return true;
      if (size !== keep) this.trim(size, bytes);
    }
    return this.idle + bytes <= cap;
  }

  // Drops idle buffers of `size` until `bytes` more fit under the cap.
  private trim(size: number, bytes: number): void {
    const list = this.free.get(size);
    if (!list) return;
    const cap = this.maxIdle + this.reserved;
    while (list.length > 0 && this.idle + bytes > cap) {
      list.pop();
      this.idle -= size;
    }
    if (list.length === 0) this.free.delete(size);
  }
}

// Idle bytes of the daemon's pool: the upload server's 16 read chunks
// (8 MiB) plus PieceWriter's staging buffers (32 MiB), the bounds each kept
// before they shared one pool.
const MAX_IDLE_BYTES = 40 * 1024 * 1024;

// The one pool of the process.
export const buffers = new BufferPool(MAX_IDLE_BYTES);
