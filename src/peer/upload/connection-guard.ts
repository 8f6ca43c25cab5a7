import type { Server, Socket } from "node:net";
import { capConnectionsPerAddress } from "../../common/connection-cap.js";

export interface GuardOptions {
  // Connections one remote address may hold open; more are closed at once.
  perAddress: number;
  // A connection with bytes to send that has sent none for this long is
  // destroyed: its client stopped reading.
  stallMs: number;
}

interface Watched {
  // Bytes the socket has handed to the kernel (all it was given, less what
  // still waits): it moves only when a write completes.
  sent: number;
  // Since when it has been waiting with nothing sent.
  since: number;
}

// The upload server's connections. A child that never reads its responses
// would otherwise hold the connection, and the upload slot of the piece it
// asked for, for as long as it likes: one coarse timer looks at every
// connection a few times per stall period (no timer per write), and the
// destroyed socket ends the response, whose slot goes to the next in line.
export class ConnectionGuard {
  private readonly watched = new Map<Socket, Watched>();
  private timer: NodeJS.Timeout | undefined;
  // Connections closed for being over the per-address cap, and for stalling.
  refused = 0;
  stalled = 0;

  constructor(private readonly o: GuardOptions) {}

  // `tls`: the sockets that carry responses are the TLS ones, announced by
  // "secureConnection"; the per-address count is taken on the TCP one.
  attach(server: Server, tls: boolean): void {
    this.timer ??= setInterval(() => this.check(Date.now()), Math.max(50, Math.floor(this.o.stallMs / 4))).unref();
    capConnectionsPerAddress(server, this.o.perAddress, () => this.refused++);
    server.on(tls ? "secureConnection" : "connection", (s: Socket) => {
      if (!s.destroyed) this.watch(s);
    });
  }

  close(): void {
    clearInterval(this.timer);
  }

  private watch(s: Socket): void {
    this.watched.set(s, { sent: 0, since: Date.now() });
    s.once("close", () => this.watched.delete(s));
  }

  private check(now: number): void {
    for (const [s, w] of this.watched) {
      const queued = s.writableLength;
      const sent = (s.bytesWritten ?? 0) - queued;
      if (queued === 0 || sent !== w.sent) {
        w.sent = sent;
        w.since = now;
      } else if (now - w.since >= this.o.stallMs) {
        this.stalled++;
        s.destroy();
      }
    }
  }
}
