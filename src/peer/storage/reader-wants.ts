// Pieces local readers (the proxy, a streaming `get`) are blocked on, with
// how many readers wait for each and since when (Date.now()): the download
// fetches these first.
export class ReaderWants {
  private readonly wants = new Map<number, { readers: number; since: number }>();

  // A reader waits for piece n until the returned function is called.
  want(n: number): () => void {
    const w = this.wants.get(n);
    if (w) w.readers++;
    else this.wants.set(n, { readers: 1, since: Date.now() });
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = this.wants.get(n);
      if (left && --left.readers === 0) this.wants.delete(n);
    };
  }

  // Since when (Date.now()) a reader has been waiting for piece n.
  since(n: number): number | undefined {
    return this.wants.get(n)?.since;
  }

  // The lowest piece a local reader is blocked on, if any.
  first(): number | undefined {
    let min: number | undefined;
    for (const n of this.wants.keys()) if (min === undefined || n < min) min = n;
    return min;
  }
}
