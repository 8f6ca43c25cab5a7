// Trusted piece digests (docs/decisions/zero-trust.md). Three signed records,
// each checked by every child against the cluster CA, so no serving peer,
// relaying scheduler or re-announcing member can choose what a child accepts:
//   grant     the scheduler: "peer P, certificate F, fetches task T from the
//             origin" (made when it sends P back to source)
//   geometry  the fetcher: task T is L bytes in pieces of N bytes
//   piece     the fetcher: piece i of task T has this SHA-256
// A child accepts geometry and piece digests only from a fetcher a grant
// names; records outlive the scheduler that granted and the fetcher that
// signed, so any holder can relay them.
import { X509Certificate, createHash, sign, verify, type KeyObject } from "node:crypto";
import { DamselflyError } from "../common/errors.js";
import { MAX_PIECE_LENGTH, MIN_PIECE_LENGTH } from "../common/pieces.js";
import type { TlsIdentity, TlsMaterial } from "../common/tls/identity.js";

const MAX_RECORD_BYTES = 16 * 1024;

export interface Grant {
  readonly taskId: string;
  readonly peerId: string;
  // SHA-256 fingerprint of the fetcher's certificate (node's fingerprint256).
  readonly fetcher: string;
  readonly issuedAt: number;
  readonly schedulerCert: string;
  readonly sig: string;
}

// What a child needs once per task and fetcher: the grant, the fetcher's
// certificate and its signed geometry.
export interface TrustBundle {
  readonly grant: Grant;
  readonly fetcherCert: string;
  readonly contentLength: number;
  readonly pieceLength: number;
  readonly sig: string;
}

export interface PieceDigest {
  readonly number: number;
  readonly length: number;
  // Lower-case hex SHA-256 of the piece's bytes.
  readonly sha256: string;
  readonly sig: string;
}

const grantPayload = (g: Omit<Grant, "sig" | "schedulerCert">) => `damselfly-grant-v1\n${g.taskId}\n${g.peerId}\n${g.fetcher}\n${g.issuedAt}`;
const geometryPayload = (taskId: string, fetcher: string, contentLength: number, pieceLength: number) =>
  `damselfly-geometry-v1\n${taskId}\n${fetcher}\n${contentLength}\n${pieceLength}`;
const piecePayload = (taskId: string, p: Omit<PieceDigest, "sig">) => `damselfly-piece-v1\n${taskId}\n${p.number}\n${p.length}\n${p.sha256}`;

// sha256 for EC and RSA keys; Ed25519/Ed448 take no separate hash.
const hashFor = (key: KeyObject) => (key.asymmetricKeyType === "ed25519" || key.asymmetricKeyType === "ed448" ? null : "sha256");

function signText(m: TlsMaterial, text: string): string {
  return sign(hashFor(m.privateKey), Buffer.from(text), m.privateKey).toString("base64");
}

function verifyText(cert: X509Certificate, text: string, sig: string): boolean {
  try {
    return verify(hashFor(cert.publicKey), Buffer.from(text), cert.publicKey, Buffer.from(sig, "base64"));
  } catch {
    return false;
  }
}

const bad = (why: string) => new DamselflyError("DF_ERR_TRUST_INVALID", why);

export function signGrant(scheduler: TlsMaterial, taskId: string, peerId: string, fetcher: string, now = Date.now()): Grant {
  const g = { taskId, peerId, fetcher, issuedAt: now };
  return { ...g, schedulerCert: scheduler.cert.toString("utf8"), sig: signText(scheduler, grantPayload(g)) };
}

export function signBundle(fetcher: TlsMaterial, grant: Grant, contentLength: number, pieceLength: number): TrustBundle {
  if (grant.fetcher !== fetcher.leaf.fingerprint256) throw bad("the grant names another certificate");
  const sig = signText(fetcher, geometryPayload(grant.taskId, grant.fetcher, contentLength, pieceLength));
  return { grant, fetcherCert: fetcher.cert.toString("utf8"), contentLength, pieceLength, sig };
}

export function signPiece(fetcher: TlsMaterial, taskId: string, number: number, length: number, sha256: string): PieceDigest {
  const p = { number, length, sha256 };
  return { ...p, sig: signText(fetcher, piecePayload(taskId, p)) };
}

export function sha256Hex(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

export function encodeRecord(r: Grant | TrustBundle): Uint8Array {
  return Buffer.from(JSON.stringify(r));
}

function decodeJson(bytes: Uint8Array | string): Record<string, unknown> {
  if (bytes.length > MAX_RECORD_BYTES) throw bad("record too large");
  try {
    const v = JSON.parse(typeof bytes === "string" ? bytes : Buffer.from(bytes).toString("utf8")) as unknown;
    if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Error();
    return v as Record<string, unknown>;
  } catch {
    throw bad("record is not a JSON object");
  }
}

const str = (o: Record<string, unknown>, k: string): string => {
  const v = o[k];
  if (typeof v !== "string" || v.length > MAX_RECORD_BYTES) throw bad(`record field ${k} missing`);
  return v;
};
const int = (o: Record<string, unknown>, k: string): number => {
  const v = o[k];
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) throw bad(`record field ${k} missing`);
  return v;
};

export function decodeGrant(bytes: Uint8Array | string): Grant {
  const o = decodeJson(bytes);
  return {
    taskId: str(o, "taskId"),
    peerId: str(o, "peerId"),
    fetcher: str(o, "fetcher"),
    issuedAt: int(o, "issuedAt"),
    schedulerCert: str(o, "schedulerCert"),
    sig: str(o, "sig"),
  };
}

export function decodeBundle(bytes: Uint8Array | string): TrustBundle {
  const o = decodeJson(bytes);
  const g = o.grant;
  if (typeof g !== "object" || g === null) throw bad("bundle without a grant");
  return {
    grant: decodeGrant(JSON.stringify(g)),
    fetcherCert: str(o, "fetcherCert"),
    contentLength: int(o, "contentLength"),
    pieceLength: int(o, "pieceLength"),
    sig: str(o, "sig"),
  };
}

// Piece length 512 KiB..64 MiB and content length at most `maxContentLength`:
// checked before anything is allocated for a task.
export function checkGeometry(contentLength: number, pieceLength: number, maxContentLength: number): void {
  if (!Number.isSafeInteger(pieceLength) || pieceLength < MIN_PIECE_LENGTH || pieceLength > MAX_PIECE_LENGTH) {
    throw new DamselflyError("DF_ERR_GEOMETRY_INVALID", `piece length ${pieceLength} is outside ${MIN_PIECE_LENGTH}..${MAX_PIECE_LENGTH}`);
  }
  if (!Number.isSafeInteger(contentLength) || contentLength < 0 || contentLength > maxContentLength) {
    throw new DamselflyError("DF_ERR_GEOMETRY_INVALID", `content length ${contentLength} is outside 0..${maxContentLength}`);
  }
}

export interface VerifiedFetcher {
  readonly fingerprint: string;
  readonly cert: X509Certificate;
  readonly contentLength: number;
  readonly pieceLength: number;
}

// Checks a grant for `taskId` against the cluster CA: a scheduler certificate
// valid when it was issued, and its signature.
export function verifyGrant(ca: TlsIdentity, grant: Grant, taskId: string): void {
  if (grant.taskId !== taskId) throw bad("grant is for another task");
  const { cert } = ca.verifyCert(grant.schedulerCert, ["scheduler"], grant.issuedAt);
  if (!verifyText(cert, grantPayload(grant), grant.sig)) throw bad("grant signature does not verify");
}

// A bundle: its grant, the fetcher's certificate (the one the grant names, a
// peer or seed peer valid when granted) and its geometry signature and bounds.
export function verifyBundle(ca: TlsIdentity, b: TrustBundle, taskId: string, maxContentLength: number): VerifiedFetcher {
  verifyGrant(ca, b.grant, taskId);
  const { cert } = ca.verifyCert(b.fetcherCert, ["peer", "seed-peer"], b.grant.issuedAt);
  if (cert.fingerprint256 !== b.grant.fetcher) throw bad("fetcher certificate is not the one granted");
  if (!verifyText(cert, geometryPayload(taskId, b.grant.fetcher, b.contentLength, b.pieceLength), b.sig)) throw bad("geometry signature does not verify");
  checkGeometry(b.contentLength, b.pieceLength, maxContentLength);
  return { fingerprint: cert.fingerprint256, cert, contentLength: b.contentLength, pieceLength: b.pieceLength };
}

export function verifyPieceDigest(f: VerifiedFetcher, taskId: string, p: PieceDigest): boolean {
  if (!/^[0-9a-f]{64}$/.test(p.sha256)) return false;
  return verifyText(f.cert, piecePayload(taskId, p), p.sig);
}
