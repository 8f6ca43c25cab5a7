import net from "node:net";
import { once } from "node:events";

export interface Throttle {
  // "127.0.0.1:PORT"
  hostPort: string;
  // Bytes sent to clients so far.
  sent(): number;
  setRate(bytesPerSecond: number): void;
  stop(): Promise<void>;
}

// A TCP forwarder on 127.0.0.1 that limits the bytes flowing back to clients
// (all connections together), to make an origin slow enough that a test can
// act in the middle of a transfer.
// `listen` puts it elsewhere on loopback (default 127.0.0.1, any port): a
// daemon advertising 127.0.0.2 with the throttle on 127.0.0.2:<its upload
// port> is reached by its children only through the throttle.
export async function startThrottle(
  target: { host: string; port: number },
  bytesPerSecond: number,
  listen: { host: string; port: number } = { host: "127.0.0.1", port: 0 },
): Promise<Throttle> {
  let rate = bytesPerSecond;
  let sent = 0;
  let windowStart = Date.now();
  let windowBytes = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(target);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
      s.on("error", () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.on("data", (buf: Buffer) => {
      client.write(buf);
      sent += buf.length;
      windowBytes += buf.length;
      const elapsed = Date.now() - windowStart;
      const due = (windowBytes / rate) * 1000;
      if (due > elapsed) {
        upstream.pause();
        setTimeout(() => upstream.resume(), Math.min(1000, due - elapsed));
      }
      if (elapsed > 1000) {
        windowStart = Date.now();
        windowBytes = 0;
      }
    });
    upstream.on("end", () => client.end());
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
  });
  server.listen(listen.port, listen.host);
  await once(server, "listening");
  const port = (server.address() as net.AddressInfo).port;
  return {
    hostPort: `${listen.host}:${port}`,
    sent: () => sent,
    setRate: (r) => (rate = r),
    stop: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
