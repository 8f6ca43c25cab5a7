// A real scheduler process (mutual TLS) flooded with fake registrations from
// one certificate: it hits its caps per registrant (hosts, tasks), a second
// registrant hits the total cap, the scheduler's memory stays bounded, and a
// third registrant is still served. Before the caps, 20,000 fake hosts and
// 100,000 tasks took a scheduler from 64 to 540 MB.
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { makePki } from "../helpers/pki.js";
import { spawnDamselfly } from "../helpers/procs.js";
import { MiB, rssOf } from "../helpers/oversized.js";
import { tempDir } from "../helpers/store.js";
import { clientWith, codeOf, hostMsg, LEN, newTaskId, PL, type SchedClient } from "../helpers/scheduler-tls.js";

const BATCH = 200;
const MAX_TASKS = 15_000;

const cached = (taskId: string, peerId: string) => ({ taskId, peerId, contentLength: LEN, pieceLength: PL, totalPieces: 10 });

// Announces `batches` batches of new tasks on `hostId`: the tasks taken
// (the refusal codes of the rest go to `codes`).
async function flood(c: SchedClient, hostId: string, batches: number, codes: string[]): Promise<string[]> {
  const taken: string[] = [];
  for (let b = 0; b < batches; b++) {
    const tasks = Array.from({ length: BATCH }, (_, i) => cached(newTaskId(), `${hostId}-p${b}-${i}`));
    const code = await codeOf(c.announceCachedTasks({ hostId, tasks }));
    if (code === "ok") taken.push(...tasks.map((x) => x.taskId));
    else codes.push(code);
  }
  return taken;
}

test("fake registrations from one registrant hit its caps, the total caps hold, memory stays bounded, others are served", { timeout: 180_000 }, async (t) => {
  const dir = tempDir(t, "df-sched-flood-");
  const pki = await makePki(join(dir, "pki"));
  const proc = spawnDamselfly(["scheduler", "--listen", "127.0.0.1:0", ...(await pki.args("scheduler", "sched"))], {
    t,
    env: { DAMSELFLY_SCHEDULER_LIMITS_MAX_TASKS: String(MAX_TASKS) },
  });
  const ready = await proc.waitForLog("scheduler ready", 20_000);
  const port = Number(String(ready.listen).split(":").pop());
  // The scheduler respawns itself with its V8 pool: its log lines carry the real pid.
  const pid = Number(ready.pid);
  const cleanups: (() => unknown)[] = [];
  t.after(async () => {
    for (const c of cleanups) await c();
  });
  const client = async (name: string) => clientWith(await pki.issue("peer", name), port, cleanups);
  const a = await client("flood-a");
  const b = await client("flood-b");
  const c = await client("flood-c");
  // Warm: the first calls load code and TLS state the flood does not add to.
  await b.announceHost({ host: hostMsg("h-b", "flood-b"), intervalSeconds: 0 });
  const before = rssOf(pid);

  const hostCodes: string[] = [];
  let hosts = 0;
  for (let i = 0; i < 50; i++) {
    const code = await codeOf(a.announceHost({ host: hostMsg(`h-a-${i}`, "flood-a"), intervalSeconds: 4_000_000_000 }));
    if (code === "ok") hosts++;
    else hostCodes.push(code);
  }
  assert.equal(hosts, 4, "limits.hostsPerRegistrant");
  assert.deepEqual(new Set(hostCodes), new Set(["DF_ERR_LIMIT_EXCEEDED"]));

  const codes: string[] = [];
  const ofA = await flood(a, "h-a-0", 100, codes);
  assert.equal(ofA.length, 10_000, "limits.tasksPerRegistrant");
  assert.equal((await flood(b, "h-b", 50, codes)).length, MAX_TASKS - 10_000, "limits.maxTasks");
  assert.deepEqual(new Set(codes), new Set(["DF_ERR_LIMIT_EXCEEDED"]));
  const grown = rssOf(pid) - before;
  t.diagnostic(`scheduler RSS ${(before / MiB).toFixed(0)} MiB before, +${(grown / MiB).toFixed(0)} MiB after ${MAX_TASKS} tasks and peers`);
  assert.ok(grown < 100 * MiB, `RSS grew ${(grown / MiB).toFixed(0)} MiB`);

  // A third registrant: its host, and a peer of a task already known.
  assert.equal((await c.announceHost({ host: hostMsg("h-c", "flood-c"), intervalSeconds: 0 })).newHost, true);
  assert.equal(await codeOf(c.announceCachedTasks({ hostId: "h-c", tasks: [cached(newTaskId(), "p-c-new")] })), "DF_ERR_LIMIT_EXCEEDED", "no new task");
  const known = ofA[0]!;
  await c.announceCachedTasks({ hostId: "h-c", tasks: [cached(known, "p-c-1")] });
  assert.ok(
    (await c.listTaskPeers({ taskId: known })).peers.some((p) => p.peerId === "p-c-1"),
    "served on a known task",
  );
});
