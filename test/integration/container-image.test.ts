// Damselfly's container image, built here from the repo's Containerfile with
// no public registry (deploy/image/build.sh: local bases from debootstrap and
// this machine's Node) and started under podman with no network but its own
// loopback (deploy/image/smoke.sh): --version, a ready scheduler that is PID 1
// with its V8 pool size in NODE_OPTIONS, running unprivileged, stopping with
// exit 0 on SIGTERM, and a manager whose SQLite (a native module compiled in
// the build stage) opens; then under containerd (deploy/image/smoke-ctr.sh,
// when containerd is installed) a swarm whose origin egress is 1.0x. Skipped
// unless root with buildah, podman and debootstrap installed. A first build
// takes minutes (Debian packages, npm ci, the TypeScript build); later ones
// reuse the bases and the npm ci layer.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT, runProcess, tail } from "../helpers/procs.js";

const TOOLS = ["buildah", "podman", "debootstrap"];
// For the containerd part (deploy/image/smoke-ctr.sh), run when all are there.
const CTR_TOOLS = ["containerd", "containerd-shim-runc-v2", "ctr", "ip"];
// Bounds the image: Node itself is about 100 MB, the production
// node_modules and dist/ add the rest; a build stage leaking into the final
// image (compiler, dev dependencies) goes far past this.
const MAX_IMAGE_BYTES = 400 * 1024 * 1024;

function missingTool(tools: readonly string[]): string | undefined {
  const path = (process.env["PATH"] ?? "").split(":").concat(["/usr/sbin", "/sbin"]);
  return tools.find((tool) => !path.some((dir) => dir !== "" && existsSync(join(dir, tool))));
}

test("the image builds without a public registry; its scheduler and manager start, and its swarm under containerd pulls once from the origin", {
  timeout: 30 * 60_000,
}, async (t) => {
  const required = process.env["DAMSELFLY_REQUIRE_IMAGE"] === "1";
  if (process.getuid?.() !== 0) {
    assert.ok(!required, "the image test is required (DAMSELFLY_REQUIRE_IMAGE=1) but needs root");
    return t.skip("building an image needs root");
  }
  const missing = missingTool(TOOLS);
  if (missing) {
    assert.ok(!required, `the image test is required (DAMSELFLY_REQUIRE_IMAGE=1) but ${missing} is not installed`);
    return t.skip(`${missing} is not installed (apt-get install buildah podman debootstrap)`);
  }
  const image = `localhost/damselfly-test:${process.pid}`;
  t.after(() => runProcess("podman", ["rmi", "-f", image], { env: process.env, timeoutMs: 60_000 }).catch(() => undefined));

  const build = await runProcess("sh", [join(REPO_ROOT, "deploy/image/build.sh")], {
    env: { ...process.env, IMAGE: image },
    cwd: REPO_ROOT,
    timeoutMs: 25 * 60_000,
  });
  const built = build.stdout.toString("utf8");
  assert.equal(build.code, 0, `build failed\n${tail(build.stderr)}\n${tail(built)}`);
  const size = Number(/size_bytes=(\d+)/.exec(built)?.[1]);
  assert.ok(size > 0 && size < MAX_IMAGE_BYTES, `image size ${size} bytes, want under ${MAX_IMAGE_BYTES}`);
  t.diagnostic(built.trim().split("\n").at(-1) ?? "");

  const smoke = await runProcess("sh", [join(REPO_ROOT, "deploy/image/smoke.sh"), image], { env: process.env, cwd: REPO_ROOT, timeoutMs: 3 * 60_000 });
  const said = smoke.stdout.toString("utf8");
  assert.equal(smoke.code, 0, `smoke failed\n${tail(smoke.stderr)}\n${tail(said)}`);
  assert.match(said, /smoke: ok/);

  const noCtr = missingTool(CTR_TOOLS);
  if (noCtr) {
    assert.ok(!required, `the image test is required (DAMSELFLY_REQUIRE_IMAGE=1) but ${noCtr} is not installed`);
    return t.diagnostic(`${noCtr} is not installed: the containerd part is skipped`);
  }
  // Under containerd: a scheduler, a seed peer and two peers from the image
  // in one network namespace; both peers get a file, the origin sends it once.
  const ctr = await runProcess("sh", [join(REPO_ROOT, "deploy/image/smoke-ctr.sh"), image], { env: process.env, cwd: REPO_ROOT, timeoutMs: 4 * 60_000 });
  const ctrSaid = ctr.stdout.toString("utf8");
  assert.equal(ctr.code, 0, `smoke-ctr failed\n${tail(ctr.stderr)}\n${tail(ctrSaid)}`);
  assert.match(ctrSaid, /origin sent 4194304 bytes for them/);
  assert.match(ctrSaid, /smoke-ctr: ok/);
});
