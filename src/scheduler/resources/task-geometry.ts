import { DamselflyError } from "../../common/errors.js";
import { checkGeometry } from "../../protocol/trust.js";

// A task's geometry as a peer reports it (back_to_source_started/finished,
// peer_finished, a cached task).
export interface GeometryReport {
  readonly contentLength: bigint;
  readonly pieceLength: bigint;
  // 0: not given (computed from the lengths).
  readonly totalPieces?: number;
  // False: the origin gave no length yet (only the piece length counts).
  readonly known: boolean;
}

// Who set a task's geometry: the peer the scheduler sent to the origin
// ("granted"), or whoever reported first ("reported": a cached task after a
// scheduler restart, a peer that went to the origin on its own).
export type GeometrySource = "granted" | "reported";

export interface TaskGeometry {
  contentLength: bigint;
  pieceLength: bigint;
  totalPieces: number;
  contentLengthKnown: boolean;
  geometryBy: GeometrySource | undefined;
}

const bad = (message: string) => new DamselflyError("DF_ERR_GEOMETRY_INVALID", message);

function safe(v: bigint, what: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw bad(`${what} ${v} is too large`);
  return Number(v);
}

// A report's bounds, before anything is recorded: piece length 512 KiB to
// 64 MiB, content length at most `maxContentLength`, a piece count that
// matches the lengths. An empty task may leave its piece length out.
export function checkGeometryReport(r: GeometryReport, maxContentLength: number): void {
  const cl = safe(r.contentLength, "content length");
  const pl = safe(r.pieceLength, "piece length");
  if (pl === 0 && (!r.known || cl === 0)) return;
  checkGeometry(r.known ? cl : 0, pl, maxContentLength);
  const total = r.totalPieces ?? 0;
  if (r.known && total !== 0 && total !== Math.ceil(cl / pl)) throw bad(`${total} pieces do not make ${cl} bytes in pieces of ${pl}`);
}

function agrees(t: TaskGeometry, r: GeometryReport): boolean {
  if (r.known && t.contentLengthKnown && r.contentLength !== t.contentLength) return false;
  return r.pieceLength === 0n || t.pieceLength === 0n || r.pieceLength === t.pieceLength;
}

// Records a report. The first one sets the geometry; later ones must agree
// with it (DF_ERR_GEOMETRY_INVALID otherwise), so no peer changes what other
// peers were told. One exception: the peer the scheduler sent to the origin
// (`granted`) replaces what a peer that was not sent there reported first,
// or any registrant could fix a task's geometry before its real fetcher.
export function recordGeometry(t: TaskGeometry, r: GeometryReport, granted: boolean): void {
  const has = t.contentLengthKnown || t.pieceLength > 0n;
  if (has && granted && t.geometryBy !== "granted") {
    t.contentLength = 0n;
    t.pieceLength = 0n;
    t.totalPieces = 0;
    t.contentLengthKnown = false;
  } else if (has && !agrees(t, r)) {
    throw bad(
      `the task is ${t.contentLengthKnown ? `${t.contentLength} bytes` : "of unknown length"} in pieces of ${t.pieceLength}; the report says ${r.contentLength}/${r.pieceLength}`,
    );
  }
  if (granted) t.geometryBy = "granted";
  else t.geometryBy ??= "reported";
  if (r.pieceLength > 0n && t.pieceLength === 0n) t.pieceLength = r.pieceLength;
  if (!r.known || t.contentLengthKnown) return;
  t.contentLength = r.contentLength;
  t.contentLengthKnown = true;
  const total = r.totalPieces ?? 0;
  t.totalPieces = total > 0 || r.contentLength === 0n ? total : t.pieceLength > 0n ? Number((r.contentLength + t.pieceLength - 1n) / t.pieceLength) : 0;
}
