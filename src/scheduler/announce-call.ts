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
  const { logger: log, store, engine, events, counters } = deps;
  const session = new PeerSession(store, events, sink, log, engine.now, counters, trace?.traceparent ? trace : undefined);
  let rejected = false;
  return {
    message(req) {
      if (rejected) return false;
      try {
        session.handle(req);
        return true;
      } catch (err) {
        rejected = true;
        const ce = err instanceof ConnectError ? err : toConnectError(err);
        log.warn({ hostId: req.hostId, taskId: req.taskId, peerId: req.peerId, code: ce.code, err: ce.rawMessage }, "announce stream rejected");
        sink.close(ce);
        session.end();
        return false;
      }
    },
    end() {
      sink.close();
      session.end();
    },
    gone() {
      session.end();
    },
  };
}
