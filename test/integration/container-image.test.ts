// Damselfly's container image, built here from the repo's Containerfile with
// no public registry (deploy/image/build.sh: local bases from debootstrap and
// this machine's Node) and started under podman with no network but its own
// loopback (deploy/image/smoke.sh): --version, a ready scheduler that is PID 1
// with its V8 pool size in NODE_OPTIONS, running unprivileged, stopping with
// exit 0 on SIGTERM, and a manager whose SQLite (a native module compiled in
// the build stage) opens. Skipped unless root with buildah, podman and
// debootstrap installed. A first build takes minutes (Debian packages, npm ci,
// the TypeScript build); later ones reuse the bases and the npm ci layer.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT, runProcess, tail } from "../helpers/procs.js";

const TOOLS = ["buildah", "podman", "debootstrap"];
// Bounds the image: Node itself is about 100 MB, the production
// node_modules and dist/ add the rest; a build stage leaking into the final
// image (compiler, dev dependencies) goes far past this.
const MAX_IMAGE_BYTES = 400 * 1024 * 1024;

function missingTool(): string | undefined {
  const path = (process.env["PATH"] ?? "").split(":").concat(["/usr/sbin", "/sbin"]);
  return TOOLS.find((tool) => !path.some((dir) => dir !== "" && existsSync(join(dir, tool))));
}

test("the image builds without a public registry and its scheduler and manager start", { timeout: 30 * 60_000 }, async (t) => {
  if (process.getuid?.() !== 0) return t.skip("building an image needs root");
  const missing = missingTool();
  if (missing) return t.skip(`${missing} is not installed (apt-get install buildah podman debootstrap)`);
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
});
