// Fixed-size read buffers reused across piece uploads: serving gigabytes
// would otherwise allocate a fresh buffer per chunk and leave the garbage
// collector (and RSS) to catch up.
export class BufferPool {
  private readonly free: Buffer[] = [];

  constructor(readonly size: number, private readonly keep: number) {}

  get(): Buffer {
    return this.free.pop() ?? Buffer.allocUnsafeSlow(this.size);
  }

  // Only once the socket is done with it.
  put(buf: Buffer): void {
    if (this.free.length < this.keep && buf.length === this.size) this.free.push(buf);
  }
}
