import http from "node:http";
import type { HostPort } from "../../common/address.js";
import { closeServer, listenOn } from "../../common/http-server.js";
import type { Logger } from "../../common/logger.js";

// The registry mirror / HTTP proxy port. The mirror itself (routing blob
// pulls through P2P) is the next milestone; until then the port is bound so
// deployments and runtime configs can point at it, and every request gets an
// explicit 501 rather than a silent failure.
export class ProxyServer {
  address: HostPort = { host: "", port: 0 };
  private server: http.Server | undefined;

  constructor(private readonly o: { listen: string; logger: Logger }) {}

  async start(): Promise<void> {
    const server = http.createServer((req, res) => {
      if (req.url === "/healthy") {
        res.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
        return;
      }
      res.writeHead(501, { "content-type": "application/json", "x-damselfly-error": "DF_ERR_INVALID_REQUEST" });
      res.end(JSON.stringify({ code: "DF_ERR_INVALID_REQUEST", message: "the registry mirror / proxy is not enabled in this version" }) + "\n");
    });
    this.address = await listenOn(server, this.o.listen, "proxy listen address");
    this.server = server;
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (s) await closeServer(s);
  }
}
