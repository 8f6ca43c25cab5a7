import { DamselflyError } from "../../common/errors.js";
import { SpanKind, spanUrl, startSpan, type Span } from "../../common/trace.js";
import type { Logger } from "../../common/logger.js";
import type { Download } from "../../protocol/index.js";
import type { LocalTask, MakeRoom } from "../storage/local-task.js";
import type { Source } from "../source/source.js";
import type { DaemonMetrics } from "../metrics.js";
import type { TaskLimits } from "../rate-limits.js";
import type { TaskAnnouncer } from "./task-announcer.js";
import { fetchFromSource, type SourceFetchHooks } from "./source-fetcher.js";
import { checkGeometry } from "../../protocol/trust.js";
import type { TaskTrust } from "./task-trust.js";

export interface BackToSourceOptions {
  task: LocalTask;
  download: Download;
  source: Source;
  limits?: TaskLimits | undefined;
  metrics?: DaemonMetrics | undefined;
  // Asked before the task's data file grows (the disk GC).
  makeRoom?: MakeRoom | undefined;
  log: Logger;
  stats: { backToSource: boolean; bytesFromSource: number };
  // Aborted when the download ends.
  signal: AbortSignal;
  // The download's span (each run gets a child span).
  span: Span;
  announcer: TaskAnnouncer;
  // A piece was stored.
  progressed(): void;
  // Pieces being fetched from parents (not fetched again from the origin).
  inFlight: ReadonlyMap<number, string>;
  // Every byte from the origin, at its offset (the digest checks).
  feed(offset: number, chunk: Uint8Array): void;
  // Largest content length a task may have.
  maxContentLength: number;
  // With TLS: signs the geometry and each piece when this peer holds the
  // scheduler's grant.
  trust?: TaskTrust | undefined;
}

// A download's trips to the origin: each run fetches the pieces still
// missing, stores and reports them, and has its own span.
export class BackToSource {
  private span: Span | undefined;
  private elsewhere: ((n: number) => boolean) | undefined;

  constructor(private readonly o: BackToSourceOptions) {}

  // Resolves when the origin sent every piece it was asked for.
  // `elsewhere`: pieces the download takes from its parents meanwhile: not
  // asked of the origin.
  async run(reason: string, elsewhere?: (n: number) => boolean): Promise<void> {
    const o = this.o;
    this.elsewhere = elsewhere;
    if (!o.stats.backToSource) o.metrics?.backToSourceStarted();
    o.stats.backToSource = true;
    o.log.info({ reason }, "fetching from the origin");
    const d = o.download;
    this.span?.end();
    const span = (this.span = startSpan("back-to-source", {
      kind: SpanKind.CLIENT,
      parent: o.span,
      attributes: { "url.full": spanUrl(d.url), "damselfly.reason": reason },
    }));
    const task = o.task;
    if (task.infoKnown) o.announcer.backToSourceStarted(task.meta.contentLength, task.meta.pieceLength, true);
    try {
      await fetchFromSource({
        source: o.source,
        task,
        url: d.url,
        headers: { ...d.headers },
        userPieceLength: Number(d.pieceLength),
        hooks: this.hooks(),
        signal: o.signal,
        throttle: o.limits?.fromSource,
      });
    } catch (err) {
      const e = DamselflyError.from(err, "DF_ERR_SOURCE_UNREACHABLE");
      span.setError(e).end();
      throw e;
    }
    span.setAttribute("damselfly.bytes_from_origin", o.stats.bytesFromSource).end();
  }

  private hooks(): SourceFetchHooks {
    const o = this.o;
    const task = o.task;
    return {
      onInfo: async (contentLength, pieceLength, known) => {
        // Bounded like any answer, before anything is allocated.
        checkGeometry(known ? contentLength : 0, pieceLength, o.maxContentLength);
        await task.setInfo(contentLength, pieceLength, o.makeRoom);
        // Signed (and kept) before any piece it covers is stored.
        if (known) await o.trust?.signGeometry(contentLength, pieceLength);
        o.announcer.backToSourceStarted(contentLength, pieceLength, known);
      },
      signs: () => o.trust?.signing ?? false,
      onPiece: async (n, crc, length, costMicros, sha256) => {
        if (task.pieces.has(n)) return;
        o.stats.bytesFromSource += length;
        o.metrics?.piece("origin", length, costMicros / 1e6);
        const trust = sha256 === undefined ? undefined : o.trust?.signPiece(n, length, sha256);
        await task.markPiece(trust ? { number: n, crc, length, trust } : { number: n, crc, length });
        o.progressed();
        o.announcer.pieceFinished(n, length, crc, BigInt(Math.round(costMicros)), "");
      },
      isDone: (n) => task.pieces.has(n) || o.inFlight.has(n) || this.elsewhere?.(n) === true,
      onBytes: (offset, chunk) => o.feed(offset, chunk),
    };
  }

  // The download ended: a run still going ends its span.
  endSpan(): void {
    this.span?.end();
  }
}
