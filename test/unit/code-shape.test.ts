import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { test } from "node:test";
import ts from "typescript";

// The size limits of docs/decisions/code-shape.md: a file in src/ over
// MAX_FILE_LINES or a function over MAX_FUNCTION_LINES is a sign that
// concerns were folded together. Generated code is exempt.
const MAX_FILE_LINES = 400;
const MAX_FUNCTION_LINES = 80;

const root = join(import.meta.dirname, "..", "..", "..");
const srcDir = join(root, "src");

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name === "gen" || e.name === "node_modules" || e.name === "dist") continue;
      out.push(...sources(p));
    } else if (/\.tsx?$/.test(e.name) && !e.name.endsWith(".d.ts")) out.push(p);
  }
  return out;
}

interface Long {
  where: string;
  lines: number;
}

function longFunctions(file: string): Long[] {
  const text = readFileSync(file, "utf8");
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, file.endsWith(".tsx") ? ts.ScriptKind.TSX : ts.ScriptKind.TS);
  const found: Long[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isFunctionLike(node) && (node as ts.FunctionLikeDeclaration).body) {
      const start = sf.getLineAndCharacterOfPosition(node.getStart(sf)).line;
      const end = sf.getLineAndCharacterOfPosition(node.getEnd()).line;
      const lines = end - start + 1;
      if (lines > MAX_FUNCTION_LINES) {
        const name = (node as ts.FunctionLikeDeclaration).name?.getText(sf) ?? "(anonymous)";
        found.push({ where: `${relative(root, file)}:${start + 1} ${name}`, lines });
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return found;
}

test("no file in src/ is over the line limit", () => {
  const over = sources(srcDir)
    .map((f) => ({ f: relative(root, f), n: readFileSync(f, "utf8").split("\n").length }))
    .filter((x) => x.n > MAX_FILE_LINES);
  assert.deepEqual(over, [], `files over ${MAX_FILE_LINES} lines`);
});

test("no function in src/ is over the line limit", () => {
  const over = sources(srcDir).flatMap(longFunctions);
  assert.deepEqual(over, [], `functions over ${MAX_FUNCTION_LINES} lines`);
});
