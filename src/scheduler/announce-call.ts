import { ConnectError } from "@connectrpc/connect";
import type { Logger } from "../common/logger.js";
import { toConnectError, type BidiSink, type schedulerv1 } from "../protocol/index.js";
import type { PeerCounters } from "./peer-counters.js";
import { PeerSession, type IncomingTrace } from "./peer-session.js";
import type { ResourceStore } from "./resources/resource-store.js";
import type { SchedulingEngine } from "./scheduling/engine.js";
import type { PeerEvents } from "./scheduling/peer-events.js";

export interface AnnounceDeps {
  logger: Logger;
  store: ResourceStore;
  engine: SchedulingEngine;
  events: PeerEvents;
  counters: PeerCounters;
}

export interface AnnounceCall {
  // False once the call was rejected: stop reading requests.
  message(req: schedulerv1.AnnouncePeerRequest): boolean;
  end(): void;
  gone(): void;
}

// One AnnouncePeer call, whichever server path carries it (the gRPC fast
// path or Connect): requests go to a PeerSession, responses to the sink, and
// a request the stream cannot survive ends it with that error.
// `trace`: the W3C trace context the daemon sent with the call.
export function openAnnounceCall(deps: AnnounceDeps, sink: BidiSink<schedulerv1.AnnouncePeerResponse>, trace?: IncomingTrace): AnnounceCall {
  const { logger, store, engine, events, counters } = deps;
  return new AnnounceStream(new PeerSession(store, events, sink, logger, engine.now, counters, trace?.traceparent ? trace : undefined), sink, logger);
}

// A class, not an object of closures: one of these lives for every open
// stream, so what it holds stays on the heap through every young GC.
class AnnounceStream implements AnnounceCall {
  private rejected = false;

  constructor(
    private readonly session: PeerSession,
    private readonly sink: BidiSink<schedulerv1.AnnouncePeerResponse>,
    private readonly log: Logger,
  ) {}

  message(req: schedulerv1.AnnouncePeerRequest): boolean {
    if (this.rejected) return false;
    try {
      this.session.handle(req);
      return true;
    } catch (err) {
      this.rejected = true;
      const ce = err instanceof ConnectError ? err : toConnectError(err);
      this.log.warn({ hostId: req.hostId, taskId: req.taskId, peerId: req.peerId, code: ce.code, err: ce.rawMessage }, "announce stream rejected");
      this.sink.close(ce);
      this.session.end();
      return false;
    }
  }

  end(): void {
    this.sink.close();
    this.session.end();
  }

  gone(): void {
    this.session.end();
  }
}
