import type { Server, Socket } from "node:net";
import { addressGroup } from "./cidr.js";

// At most `cap` open connections from one remote address (an IPv6 one by
// its /64, see addressGroup): more are closed
// at once, before a byte is read (on the TCP socket, before any TLS
// handshake). Unix socket callers have no address and are not counted.
// `refused` is told of each connection closed.
export function capConnectionsPerAddress(server: Server, cap: number, refused?: (socket: Socket) => void): void {
  const open = new Map<string, number>();
  server.on("connection", (socket: Socket) => {
    if (socket.remoteAddress === undefined) return;
    const address = addressGroup(socket.remoteAddress);
    const n = open.get(address) ?? 0;
    if (n >= cap) {
      socket.destroy();
      refused?.(socket);
      return;
    }
    open.set(address, n + 1);
    socket.once("close", () => {
      const left = (open.get(address) ?? 1) - 1;
      if (left <= 0) open.delete(address);
      else open.set(address, left);
    });
  });
}
