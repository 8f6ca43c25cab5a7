import { DamselflyError } from "../../common/errors.js";
import type { Logger } from "../../common/logger.js";
import type { TlsIdentity, TlsMaterial } from "../../common/tls/identity.js";
import { parsePieceRecord, type PieceRecord } from "../../protocol/data-plane.js";
import {
  decodeBundle,
  decodeGrant,
  signBundle,
  signPiece,
  verifyBundle,
  verifyGrant,
  verifyPieceDigest,
  type Grant,
  type TrustBundle,
  type VerifiedFetcher,
} from "../../protocol/trust.js";
import type { LocalTask } from "../storage/local-task.js";

const bad = (why: string) => new DamselflyError("DF_ERR_TRUST_INVALID", why);

// With TLS, what one download trusts (protocol/trust.ts): as a child, the
// fetchers whose bundles verified against the cluster CA (their geometry is
// the task's, their signed digests are what each piece must hash to); as
// the peer a scheduler sent to the origin, its grant and the certificate it
// names, to sign the geometry and each piece it fetches. Whatever a parent
// says beyond that (its "info", its CRCs) proves nothing.
export class TaskTrust {
  private readonly fetchers = new Map<string, VerifiedFetcher>();
  // This peer's grant, with the TLS material (certificate and key) it was
  // granted to: kept for the task even if the files rotate meanwhile.
  private signer: { grant: Grant; material: TlsMaterial } | undefined;

  constructor(
    private readonly identity: TlsIdentity,
    private readonly task: LocalTask,
    private readonly maxContentLength: number,
    private readonly log: Logger,
  ) {
    // Bundles the task kept from an earlier run.
    for (const b of task.bundles.all) {
      try {
        this.verify(b);
      } catch (err) {
        log.warn({ err: (err as Error).message }, "a stored trust bundle does not verify: ignored");
      }
    }
  }

  private verify(b: TrustBundle): VerifiedFetcher {
    const f = verifyBundle(this.identity, b, this.task.id, this.maxContentLength);
    const m = this.task.answered;
    // A task's geometry never changes: a bundle with another one covers
    // other content (the origin changed) and none of its pieces fit.
    if ((m.contentLength >= 0 && m.pieceLength > 0 && f.contentLength !== m.contentLength) || (m.pieceLength > 0 && f.pieceLength !== m.pieceLength)) {
      throw new DamselflyError(
        "DF_ERR_GEOMETRY_INVALID",
        `bundle geometry ${f.contentLength}/${f.pieceLength} is not the task's ${m.contentLength}/${m.pieceLength}`,
      );
    }
    this.fetchers.set(f.fingerprint, f);
    return f;
  }

  // A bundle a parent sent (its record's text). Resolves with the fetcher
  // when it is new and verified (once kept with the task, to relay it);
  // undefined when that fetcher is known already. Throws (synchronously
  // checked) DF_ERR_TRUST_INVALID or DF_ERR_GEOMETRY_INVALID.
  accept(record: string): { fetcher: VerifiedFetcher; kept: Promise<void> } | undefined {
    const b = decodeBundle(record);
    if (this.fetchers.has(b.grant.fetcher)) return undefined;
    const fetcher = this.verify(b);
    return { fetcher, kept: this.task.bundles.add(b) };
  }

  // The record that came with piece n's bytes (`header`), checked: a
  // fetcher whose bundle verified signed this SHA-256 for this piece and
  // length, and the bytes hash to it. Returns the record to keep and relay.
  check(n: number, length: number, sha256: string, header: string | undefined): PieceRecord {
    const rec = parsePieceRecord(header);
    if (!rec) throw bad(`piece ${n} came without a well-formed digest record`);
    const f = this.fetchers.get(rec.fetcher);
    if (!f) throw bad(`piece ${n}'s digest is signed by a fetcher whose bundle we do not hold`);
    if (!verifyPieceDigest(f, this.task.id, { number: n, length, sha256: rec.sha256, sig: rec.sig })) {
      throw bad(`piece ${n}'s digest record does not verify`);
    }
    if (rec.sha256 !== sha256) throw new DamselflyError("DF_ERR_PIECE_CORRUPT", `piece ${n} does not match its signed SHA-256`);
    return rec;
  }

  // This peer may sign what it fetches from the origin.
  get signing(): boolean {
    return this.signer !== undefined;
  }

  // The scheduler sent this peer to the origin with a grant: kept with the
  // certificate it names. A grant that does not verify, or names another
  // certificate (ours rotated since we announced), is not used: the task is
  // then fetched unsigned and never handed on. Resolves once the geometry is
  // signed, if known already.
  granted(bytes: Uint8Array): Promise<void> {
    const material = this.identity.current();
    try {
      const grant = decodeGrant(bytes);
      verifyGrant(this.identity, grant, this.task.id);
      if (grant.fetcher !== material.leaf.fingerprint256) throw bad("the grant names another certificate than ours");
      this.signer = { grant, material };
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, "back-to-source grant not usable: the task will not be handed on to other peers");
      return Promise.resolve();
    }
    const m = this.task.meta;
    return this.task.infoKnown ? this.signGeometry(m.contentLength, m.pieceLength) : Promise.resolve();
  }

  // The origin told the geometry: signed, and kept with the task.
  signGeometry(contentLength: number, pieceLength: number): Promise<void> {
    const s = this.signer;
    if (!s) return Promise.resolve();
    let b: TrustBundle;
    try {
      b = signBundle(s.material, s.grant, contentLength, pieceLength);
      this.verify(b);
    } catch (err) {
      this.signer = undefined;
      this.log.warn({ err: (err as Error).message }, "cannot sign the task's geometry: the task will not be handed on to other peers");
      return Promise.resolve();
    }
    return this.task.bundles.add(b);
  }

  // A piece from the origin, hashed on the way in: its signed record.
  signPiece(n: number, length: number, sha256: string): PieceRecord | undefined {
    const s = this.signer;
    if (!s) return undefined;
    return { sha256, fetcher: s.grant.fetcher, sig: signPiece(s.material, this.task.id, n, length, sha256).sig };
  }
}
