import { DamselflyError } from "../errors.js";

// The fields of Kubernetes objects we use, taken from untrusted JSON: each is
// type-checked and length-bounded; anything else in the object is ignored.

export interface Taint {
  key: string;
  value?: string;
  effect: string;
}

export interface KubeNode {
  name: string;
  labels: Readonly<Record<string, string>>;
  taints: readonly Taint[];
}

export interface KubePod {
  name: string;
  // "" while the pod is not bound to a node.
  nodeName: string;
}

// Label values are at most 63 characters, keys 253 + "/" + 63; names 253.
const MAX_NAME = 253;
const MAX_KEY = 317;
const MAX_VALUE = 63;
const MAX_LABELS = 1_000;
const MAX_TAINTS = 1_000;

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);
const str = (v: unknown, max: number): string | undefined => (typeof v === "string" && v.length <= max ? v : undefined);

function bad(what: string): DamselflyError {
  return new DamselflyError("DF_ERR_KUBE_RESPONSE", `the Kubernetes API answer is not ${what}`);
}

function metadataName(o: Json, what: string): string {
  const name = isObject(o.metadata) ? str(o.metadata.name, MAX_NAME) : undefined;
  if (!name) throw bad(`${what} (no metadata.name)`);
  return name;
}

export function parseNode(v: unknown): KubeNode {
  if (!isObject(v) || v.kind !== "Node") throw bad("a Node");
  const name = metadataName(v, "a Node");
  const labels: Record<string, string> = {};
  const raw = isObject(v.metadata) && isObject(v.metadata.labels) ? Object.entries(v.metadata.labels) : [];
  if (raw.length > MAX_LABELS) throw bad(`a Node (more than ${MAX_LABELS} labels)`);
  for (const [k, val] of raw) {
    const s = str(val, MAX_VALUE);
    if (k.length <= MAX_KEY && s !== undefined) labels[k] = s;
  }
  const taintList = isObject(v.spec) && Array.isArray(v.spec.taints) ? v.spec.taints : [];
  if (taintList.length > MAX_TAINTS) throw bad(`a Node (more than ${MAX_TAINTS} taints)`);
  const taints: Taint[] = [];
  for (const t of taintList) {
    const key = isObject(t) ? str(t.key, MAX_KEY) : undefined;
    const effect = isObject(t) ? str(t.effect, 64) : undefined;
    // Kept even when malformed, so list positions match the server's (a
    // JSON patch names taints by index).
    const value = isObject(t) ? str(t.value, MAX_VALUE) : undefined;
    taints.push({ key: key ?? "", effect: effect ?? "", ...(value !== undefined ? { value } : {}) });
  }
  return { name, labels, taints };
}

export function parsePodList(v: unknown): { items: KubePod[]; continue: string } {
  if (!isObject(v) || v.kind !== "PodList" || !Array.isArray(v.items)) throw bad("a PodList");
  const items: KubePod[] = [];
  for (const p of v.items) {
    if (!isObject(p)) continue;
    const name = isObject(p.metadata) ? str(p.metadata.name, MAX_NAME) : undefined;
    if (!name) continue;
    const nodeName = isObject(p.spec) ? (str(p.spec.nodeName, MAX_NAME) ?? "") : "";
    items.push({ name, nodeName });
  }
  const cont = isObject(v.metadata) ? str(v.metadata.continue, 64 * 1024) : undefined;
  return { items, continue: cont ?? "" };
}

// The message of a Status answer (an error), cut short; never the whole body.
export function statusMessage(v: unknown): string | undefined {
  if (!isObject(v) || typeof v.message !== "string") return undefined;
  return v.message.slice(0, 300).replace(/[\r\n]+/g, " ");
}
