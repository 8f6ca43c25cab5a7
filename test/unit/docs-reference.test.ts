// docs/reference/ is generated from the code (npm run docs:reference): it must
// be current, and every relative link in the docs must point at a file.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { generateReference, REFERENCE_DIR } from "../../src/cli/reference/generate.js";
import { REPO_ROOT } from "../helpers/procs.js";

test("docs/reference is what `npm run docs:reference` generates from the code", async () => {
  const pages = await generateReference();
  const stale: string[] = [];
  for (const [name, text] of pages) {
    const file = join(REPO_ROOT, REFERENCE_DIR, name);
    if (!existsSync(file) || readFileSync(file, "utf8") !== text) stale.push(name);
  }
  assert.deepEqual(stale, [], `out of date in ${REFERENCE_DIR} (run npm run docs:reference): ${stale.join(", ")}`);
});

function markdownFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? markdownFiles(p) : name.endsWith(".md") ? [p] : [];
  });
}

test("every relative link in README.md, docs/ and bench/results/ points at an existing file", () => {
  const files = [join(REPO_ROOT, "README.md"), ...markdownFiles(join(REPO_ROOT, "docs")), ...markdownFiles(join(REPO_ROOT, "bench", "results"))];
  const broken: string[] = [];
  for (const file of files) {
    // Links outside code blocks: [text](target) with no scheme.
    const text = readFileSync(file, "utf8").replace(/```[\s\S]*?```/g, "");
    for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      const target = m[1]!.split("#")[0]!;
      if (target === "" || /^[a-z][a-z0-9+.-]*:/i.test(target)) continue;
      if (!existsSync(join(dirname(file), decodeURIComponent(target)))) broken.push(`${relative(REPO_ROOT, file)}: ${m[1]}`);
    }
  }
  assert.deepEqual(broken, [], `broken links:\n${broken.join("\n")}`);
});
