// Which registries the extender may resolve at: a reference's registry read
// as containerd reads it and named as the daemons' task IDs name it, the set
// learned from the schedulers (ListRegistries, one per cluster, first
// scheduler that answers) plus the configured ones; the scheduler's side
// reports only scheme://host[:port] of content-addressed tasks.
import { test } from "node:test";
import assert from "node:assert/strict";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig } from "../../src/common/config.js";
import { createLogger } from "../../src/common/logger.js";
import { managerSchema } from "../../src/common/schemas.js";
import { checkAllowed, configuredRegistries, knownRegistries, referenceRegistry } from "../../src/manager/extender/known-registries.js";
import { urlOrigin } from "../../src/scheduler/task-jobs.js";

const logger = createLogger("fatal", join(tmpdir(), "dfm-registries-test.log"));

test("referenceRegistry: Docker Hub short names, aliases, ports, loopback over http", () => {
  const cases: [string, string | undefined][] = [
    ["nginx", "https://registry-1.docker.io"],
    ["nginx:1.27", "https://registry-1.docker.io"],
    ["team/app@sha256:" + "a".repeat(64), "https://registry-1.docker.io"],
    ["docker.io/library/nginx", "https://registry-1.docker.io"],
    ["index.docker.io/library/nginx", "https://registry-1.docker.io"],
    ["ghcr.io/org/app:v1", "https://ghcr.io"],
    ["reg.example:5000/app", "https://reg.example:5000"],
    ["localhost:5000/app", "http://localhost:5000"],
    ["127.0.0.1:5000/app", "http://127.0.0.1:5000"],
    ["Not A Ref", undefined],
    ["http://reg.example/app", undefined],
  ];
  for (const [ref, want] of cases) assert.equal(referenceRegistry(ref), want, ref);
  assert.deepEqual(configuredRegistries(["docker.io", "reg.example:5000", "127.0.0.1:5000"]), [
    "https://registry-1.docker.io",
    "https://reg.example:5000",
    "http://127.0.0.1:5000",
  ]);
});

test("the scheduler reports registries as task IDs name them, nothing of the path or userinfo", () => {
  assert.equal(urlOrigin("https://index.docker.io/v2/library/nginx/blobs/sha256:x"), "https://registry-1.docker.io");
  assert.equal(urlOrigin("http://127.0.0.1:5000/v2/a/blobs/x?sig=secret"), "http://127.0.0.1:5000");
  assert.equal(urlOrigin("https://user:pw@reg.example/v2/x"), "https://reg.example");
  assert.equal(urlOrigin("HTTPS://Reg.Example:443/v2"), "https://reg.example");
  for (const bad of ["ftp://x/y", "https://", "s3://bucket/key", "hf://org/model"]) assert.equal(urlOrigin(bad), undefined, bad);
});

test("knownRegistries: configured + the first scheduler that answers per cluster; checkAllowed refuses the rest", async () => {
  const asked: number[] = [];
  const answers: Record<number, string[] | Error> = {
    1: new Error("down"),
    2: ["http://127.0.0.1:5000", "https://registry-1.docker.io"],
    3: ["https://never.asked"],
    4: Array.from({ length: 300 }, (_, i) => `https://r${i}.example`),
  };
  const deps = {
    clusters: async () => [
      {
        id: 1,
        schedulers: [
          { ip: "127.0.0.1", port: 1 },
          { ip: "127.0.0.1", port: 2 },
          { ip: "127.0.0.1", port: 3 },
        ],
      },
      { id: 2, schedulers: [{ ip: "127.0.0.1", port: 4 }] },
    ],
    client: (s: { port: number }) => ({
      listRegistries: (async () => {
        asked.push(s.port);
        const a = answers[s.port]!;
        if (a instanceof Error) throw a;
        return { registries: a };
      }) as never,
    }),
    headers: {},
    logger,
    configured: configuredRegistries(["reg.example:5000"]),
  };
  const set = await knownRegistries(deps, AbortSignal.timeout(10_000), 1_000);
  assert.deepEqual(asked, [1, 2, 4]);
  assert.ok(set.has("https://reg.example:5000") && set.has("http://127.0.0.1:5000") && set.has("https://registry-1.docker.io"));
  assert.ok(!set.has("https://never.asked"));
  assert.equal(set.size, 3 + 256, "at most 256 per cluster");
  checkAllowed("nginx:1", set);
  checkAllowed("127.0.0.1:5000/app", set);
  assert.throws(() => checkAllowed("127.0.0.1:5001/app", set), { code: "DF_ERR_INVALID_REQUEST" });
  assert.throws(() => checkAllowed("evil.example/app", set), { code: "DF_ERR_INVALID_REQUEST" });
  assert.throws(() => checkAllowed("Not A Ref", set), { code: "DF_ERR_INVALID_REQUEST" });
});

test("config: locality on by default; extender.registries takes host[:port] only", () => {
  const load = (env: Record<string, string>) => loadConfig(managerSchema, { envPrefix: "MANAGER", env });
  const c = load({ DAMSELFLY_MANAGER_EXTENDER_REGISTRIES: "ghcr.io,reg.example:5000" });
  assert.equal(c.extender.locality, true);
  assert.deepEqual(c.extender.registries, ["ghcr.io", "reg.example:5000"]);
  for (const bad of ["https://ghcr.io", "ghcr.io/team", "a b"]) {
    assert.throws(() => load({ DAMSELFLY_MANAGER_EXTENDER_REGISTRIES: bad }), { code: "DF_ERR_CONFIG" }, bad);
  }
});
