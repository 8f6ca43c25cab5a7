import type { Server } from "node:http";
import { once } from "node:events";
import { parseHostPort, type HostPort } from "./address.js";

// Binds an HTTP server to exactly the address given ("HOST:PORT"; port 0
// picks a free one) and returns the address it got.
export async function listenOn(server: Server, listen: string, what: string): Promise<HostPort> {
  const { host, port } = parseHostPort(listen, what);
  server.listen(port, host);
  await Promise.race([once(server, "listening"), once(server, "error").then(([err]) => Promise.reject(err))]);
  const addr = server.address();
  return { host, port: typeof addr === "object" && addr ? addr.port : port };
}

// Stops accepting, drops open keep-alive connections and waits for close.
export async function closeServer(server: Server): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeAllConnections();
  await closed;
}
