import { chown, mkdir, readFile } from "node:fs/promises";
import net from "node:net";
import { dirname } from "node:path";
import type { ConnectRouter } from "@connectrpc/connect";
import { formatHostPort, parseHostPort, type HostPort } from "../../common/address.js";
import { socketPathOf } from "../../common/daemon-socket.js";
import { DamselflyError } from "../../common/errors.js";
import type { Health } from "../../common/health.js";
import type { Logger } from "../../common/logger.js";
import { checkBind } from "../../common/tls/bind-policy.js";
import type { TlsIdentity } from "../../common/tls/identity.js";
import { createRpcServer, type RpcServer } from "../../protocol/index.js";

// Group members may call the local API; others may not even connect.
export const API_SOCKET_MODE = 0o660;

export interface ApiListenOptions {
  // unix:PATH and/or HOST:PORT (config server.listen).
  listen: readonly string[];
  // Group of the socket: a name or a gid ("": the daemon's own).
  socketGroup: string;
  tls: TlsIdentity | undefined;
  insecure: boolean;
  health: Health;
  logger: Logger;
}

// The daemon's API servers: the local one on a Unix socket (callers are
// whoever the file mode lets in) and/or a network one on TCP (mutual TLS
// with certificates; loopback only without, unless --insecure). The same
// service on both; its handlers decide per call from the connection's
// caller (protocol/caller.ts).
export class ApiListeners {
  private constructor(
    readonly socket: RpcServer | undefined,
    readonly tcp: RpcServer | undefined,
    private readonly tlsOn: boolean,
  ) {}

  static async start(o: ApiListenOptions, routes: (router: ConnectRouter) => void): Promise<ApiListeners> {
    const socketTarget = o.listen.find((l) => socketPathOf(l) !== undefined);
    const tcpTarget = o.listen.find((l) => socketPathOf(l) === undefined);
    let socket: RpcServer | undefined;
    if (socketTarget) {
      const path = socketPathOf(socketTarget)!;
      await prepareSocketPath(path);
      const gid = o.socketGroup === "" ? undefined : await groupId(o.socketGroup);
      socket = await createRpcServer(socketTarget, routes, [], { health: o.health, socketMode: API_SOCKET_MODE });
      if (gid !== undefined) await giveToGroup(socket, path, gid);
    }
    let tcp: RpcServer | undefined;
    try {
      if (tcpTarget) {
        checkBind("daemon API", parseHostPort(tcpTarget, "listen address").host, o.tls !== undefined, o.insecure, o.logger);
        tcp = await createRpcServer(tcpTarget, routes, [], { health: o.health, ...(o.tls ? { tls: o.tls } : {}) });
      }
    } catch (err) {
      await socket?.close();
      throw err;
    }
    return new ApiListeners(socket, tcp, o.tls !== undefined);
  }

  // The port the scheduler reaches this daemon's API on (0: none, the
  // scheduler cannot trigger this daemon).
  get port(): number {
    return this.tcp?.address.port ?? 0;
  }

  // What `get --daemon` names: the socket when there is one.
  get target(): string {
    if (this.socket) return `unix:${this.socket.socketPath}`;
    const hp = this.tcp!.address;
    return `${this.tlsOn ? "https" : "http"}://${formatHostPort(connectable(hp))}`;
  }

  // endpoints.api: the TCP address, or the socket path with port 0.
  get address(): HostPort {
    return this.tcp?.address ?? { host: this.socket!.socketPath!, port: 0 };
  }

  // For "daemon ready": api is the local API (unix:PATH) when there is one,
  // else the TCP address; apiNetwork the TCP address when both.
  logFields(): Record<string, string> {
    const tcp = this.tcp ? formatHostPort(this.tcp.address) : undefined;
    if (!this.socket) return { api: tcp! };
    return { api: `unix:${this.socket.socketPath}`, ...(tcp ? { apiNetwork: tcp } : {}) };
  }

  async close(): Promise<void> {
    await Promise.all([this.socket?.close(), this.tcp?.close()]);
  }
}

function connectable(hp: HostPort): HostPort {
  return { host: hp.host === "0.0.0.0" ? "127.0.0.1" : hp.host === "::" ? "::1" : hp.host, port: hp.port };
}

// The socket's directory exists (created 0755: the socket's own mode guards
// it); a socket another daemon still serves is never taken over (a stale one
// is replaced by createRpcServer).
async function prepareSocketPath(path: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o755 });
  const live = await new Promise<boolean>((resolve) => {
    const s = net.connect(path);
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
  if (live) throw new DamselflyError("DF_ERR_CONFIG", `another process serves the API socket ${path}: stop it, or give this daemon another --listen unix:PATH`);
}

async function giveToGroup(server: RpcServer, path: string, gid: number): Promise<void> {
  try {
    await chown(path, process.getuid?.() ?? 0, gid);
  } catch (err) {
    await server.close();
    throw new DamselflyError("DF_ERR_CONFIG", `server.socketGroup: cannot give ${path} to group ${gid}: ${(err as Error).message}`);
  }
}

// A group name or gid as a gid (names from /etc/group: node has no getgrnam).
export async function groupId(group: string): Promise<number> {
  if (/^\d+$/.test(group)) return Number(group);
  const text = await readFile("/etc/group", "utf8").catch(() => "");
  for (const line of text.split("\n")) {
    const [name, , gid] = line.split(":");
    if (name === group && gid !== undefined && /^\d+$/.test(gid)) return Number(gid);
  }
  throw new DamselflyError("DF_ERR_CONFIG", `server.socketGroup: no group ${JSON.stringify(group)} in /etc/group (give a numeric gid)`);
}
