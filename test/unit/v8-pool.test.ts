// How `damselfly scheduler` sizes V8's thread pool (src/cli/v8-pool.ts).
import { test } from "node:test";
import assert from "node:assert/strict";
import { POOL_SIZE_ENV, RESPAWNED_ENV, schedulerPoolSize, usableCores } from "../../src/cli/v8-pool.js";

test("the pool leaves the main thread a core on machines smaller than Node's default pool", () => {
  assert.equal(schedulerPoolSize([], {}, 1), 1);
  assert.equal(schedulerPoolSize([], {}, 2), 1);
  assert.equal(schedulerPoolSize([], {}, 4), 3);
  // Five cores and up: cores - 1 >= Node's four, nothing to change.
  assert.equal(schedulerPoolSize([], {}, 5), undefined);
  assert.equal(schedulerPoolSize([], {}, 64), undefined);
});

test("a pool size set by hand, or a restarted scheduler, is left alone", () => {
  assert.equal(schedulerPoolSize(["--v8-pool-size=3"], {}, 2), undefined);
  assert.equal(schedulerPoolSize([], { NODE_OPTIONS: "--max-old-space-size=512 --v8-pool-size=2" }, 2), undefined);
  assert.equal(schedulerPoolSize([], { [RESPAWNED_ENV]: "1" }, 2), undefined);
  assert.equal(schedulerPoolSize([], { [POOL_SIZE_ENV]: "2" }, 64), 2);
  assert.equal(schedulerPoolSize([], { [POOL_SIZE_ENV]: "0" }, 2), undefined);
  assert.equal(schedulerPoolSize([], { [POOL_SIZE_ENV]: "" }, 2), 1);
});

test("a bad pool size in the environment is an error that names it", () => {
  for (const bad of ["-1", "1.5", "lots", "65"]) {
    assert.throws(() => schedulerPoolSize([], { [POOL_SIZE_ENV]: bad }, 2), new RegExp(`${POOL_SIZE_ENV}=.*expected an integer 0\\.\\.64`), bad);
  }
});

test("usable cores are at least one and at most the affinity", async () => {
  const { availableParallelism } = await import("node:os");
  const n = usableCores();
  assert.ok(n >= 1 && n <= availableParallelism(), String(n));
});
