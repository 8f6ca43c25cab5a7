import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { AsyncQueue } from "../../common/async-queue.js";
import { schedulerv1 } from "../../protocol/index.js";
import { PieceReportBatcher, type PieceBatchOptions } from "./piece-report-batcher.js";

type Req = schedulerv1.AnnouncePeerRequest["request"];
export type SchedulerClient = Client<typeof schedulerv1.SchedulerService>;

export interface StreamIds {
  hostId: string;
  taskId: string;
  peerId: string;
}

export interface StreamTarget {
  address: string;
  client: SchedulerClient;
  // The scheduler takes batched piece reports.
  batching: boolean;
  // The scheduler sends the stream's headers once it has taken the
  // registration (AnnounceHostResponse.register_ack): only then is there
  // something to wait for within the register deadline.
  registerAck: boolean;
}

export interface StreamOptions {
  ids: StreamIds;
  // The stream's first message.
  register: Req;
  onResponse: (r: schedulerv1.AnnouncePeerResponse) => void;
  // W3C trace context of the download.
  headers: Record<string, string>;
  registerTimeoutMs: number;
  pieceBatch: PieceBatchOptions | false | undefined;
}

export interface OpenStream {
  readonly address: string;
  send(req: Req): void;
  // `fn` hears when the stream breaks or the scheduler ends it (undefined:
  // ended without an error), at once if that already happened. Never after
  // close().
  watch(fn: (err: ConnectError | undefined) => void): void;
  // `flush`: let the last messages (peer finished) reach the scheduler
  // before the call ends; otherwise the call is cut at once.
  close(flush: boolean): void;
}

// The grace a closing stream gets to deliver its last messages.
const FLUSH_MS = 2_000;

// Opens one AnnouncePeer stream and sends the registration. Resolves once
// the scheduler shows it took it (its response headers, or any answer), or
// at once for a scheduler that does not acknowledge registrations; rejects
// with the stream's error, or DeadlineExceeded when the register deadline
// passes first (a hung scheduler: its kernel still accepts connections).
export function openAnnounceStream(target: StreamTarget, o: StreamOptions): Promise<OpenStream> {
  const queue = new AsyncQueue<schedulerv1.AnnouncePeerRequest>();
  const abort = new AbortController();
  let closed = false;
  let settled = false;
  let ended: { err: ConnectError | undefined } | undefined;
  let watcher: ((err: ConnectError | undefined) => void) | undefined;
  const end = (err: ConnectError | undefined) => {
    if (closed || ended) return;
    ended = { err };
    watcher?.(err);
  };
  const push = (request: Req) => {
    queue.push(create(schedulerv1.AnnouncePeerRequestSchema, { ...o.ids, request }));
  };
  const batcher = target.batching && o.pieceBatch !== false ? new PieceReportBatcher(push, o.pieceBatch) : undefined;
  const stream: OpenStream = {
    address: target.address,
    send: (request) => {
      if (closed) return;
      if (batcher) batcher.send(request);
      else push(request);
    },
    watch: (fn) => {
      watcher = fn;
      if (ended && !closed) fn(ended.err);
    },
    close: (flush) => {
      if (closed) return;
      closed = true;
      batcher?.close();
      queue.close();
      if (flush) setTimeout(() => abort.abort(), FLUSH_MS).unref();
      else abort.abort();
    },
  };
  return new Promise<OpenStream>((resolve, reject) => {
    const accept = () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(stream);
    };
    const refuse = (err: ConnectError) => {
      if (settled) return false;
      settled = true;
      clearTimeout(timer);
      closed = true;
      queue.close();
      abort.abort();
      reject(err);
      return true;
    };
    const timer = target.registerAck
      ? setTimeout(() => refuse(new ConnectError(`no answer to the registration within ${o.registerTimeoutMs} ms`, Code.DeadlineExceeded)), o.registerTimeoutMs)
      : undefined;
    timer?.unref();
    push(o.register);
    (async () => {
      try {
        const responses = target.client.announcePeer(queue, { signal: abort.signal, headers: o.headers, onHeader: accept });
        for await (const res of responses) {
          accept();
          o.onResponse(res);
        }
        if (!refuse(new ConnectError("the scheduler ended the stream before taking the registration", Code.Unavailable))) end(undefined);
      } catch (err) {
        const ce = ConnectError.from(err);
        if (!refuse(ce)) end(ce);
      }
    })();
    if (!target.registerAck) accept();
  });
}
