// `npm run docs:reference`: (re)writes docs/reference/*.md from the code.
import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { generateReference, REFERENCE_DIR } from "./generate.js";

// dist/src/cli/reference/write.js -> the repository root.
const root = resolve(fileURLToPath(new URL("../../../../", import.meta.url)));
const dir = join(root, REFERENCE_DIR);
mkdirSync(dir, { recursive: true });
for (const [name, text] of await generateReference()) {
  writeFileSync(join(dir, name), text);
  process.stdout.write(`wrote ${join(REFERENCE_DIR, name)}\n`);
}
