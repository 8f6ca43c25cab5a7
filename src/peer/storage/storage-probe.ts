import { open, rm } from "node:fs/promises";
import { join } from "node:path";

const PROBE = Buffer.from("damselfly readiness probe\n");

// Whether the store takes writes right now: a small file written, synced to
// disk and removed again, as a task's pieces would be. A read-only remount, a
// full disk or a vanished directory all show here, with the system's reason.
export async function probeWritable(dir: string): Promise<string | undefined> {
  const file = join(dir, `.ready-probe-${process.pid}`);
  let fh: Awaited<ReturnType<typeof open>> | undefined;
  try {
    fh = await open(file, "w", 0o600);
    await fh.write(PROBE);
    await fh.sync();
    return undefined;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    return `storage ${dir} is not writable: ${e.code ?? e.message}`;
  } finally {
    await fh?.close().catch(() => undefined);
    await rm(file, { force: true }).catch(() => undefined);
  }
}
