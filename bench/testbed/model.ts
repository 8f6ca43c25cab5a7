// The "model" of the model modes (mode-model.ts): N files of equal size made
// once per testbed run, where the hub and S3 fixtures keep them, and the check
// of a downloaded model directory.
import { createHash } from "node:crypto";
import { createReadStream, mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { makeFile } from "../make-file.js";

// Names both sides use: model-origin.js serves them, the clients ask for them.
export const MODEL_REPO = "bench/model";
export const MODEL_BUCKET = "models";
export const MODEL_PREFIX = "bench/model/";

export interface ModelFile {
  name: string;
  path: string;
  size: number;
  sha256: string;
}

export interface Model {
  files: ModelFile[];
  size: number;
}

// `count` files of size/count bytes (pseudo-random, seeded per file) in dir.
export async function prepareModel(dir: string, size: number, count: number): Promise<Model> {
  mkdirSync(dir, { recursive: true });
  const each = Math.floor(size / count);
  const files: ModelFile[] = [];
  for (let i = 1; i <= count; i++) {
    const name = `model-${String(i).padStart(5, "0")}-of-${String(count).padStart(5, "0")}.safetensors`;
    const path = join(dir, name);
    files.push({ name, path, size: each, sha256: await makeFile(path, each, `model-${i}`) });
  }
  return { files, size: each * count };
}

async function sha256File(path: string): Promise<string> {
  const h = createHash("sha256");
  for await (const chunk of createReadStream(path, { highWaterMark: 4 * 1024 * 1024 })) h.update(chunk as Buffer);
  return h.digest("hex");
}

// Undefined when dir holds exactly the model's files (besides get's
// .cache/ resume markers) with their bytes, else what is wrong.
export async function verifyModelDir(model: Model, dir: string): Promise<string | undefined> {
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => n !== ".cache");
  } catch (e) {
    return `${dir}: ${(e as Error).message}`;
  }
  const want = model.files.map((f) => f.name).sort();
  if (names.sort().join("\n") !== want.join("\n")) return `${dir} holds [${names.join(", ")}], expected [${want.join(", ")}]`;
  for (const f of model.files) {
    const got = await sha256File(join(dir, f.name));
    if (got !== f.sha256) return `${dir}/${f.name} has sha256 ${got}, expected ${f.sha256}`;
  }
  return undefined;
}
