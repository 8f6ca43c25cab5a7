// Reaches a listener the way a stranger would: a TLS handshake with or
// without a client certificate, then a first request, and reports whether
// anything came back. A refused probe never sees application data.
import net from "node:net";
import tls from "node:tls";
import https from "node:https";
import { readFileSync } from "node:fs";
import type { CertFiles } from "./pki.js";

export type ProbeResult = "served" | "refused";

const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
// An empty SETTINGS frame: the server answers with its own SETTINGS once the
// connection is accepted.
const H2_SETTINGS = Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]);

export interface ProbeOptions {
  // "h2": the RPC listeners (scheduler, daemon API); "http/1.1": data plane, manager.
  alpn: "h2" | "http/1.1";
  // Client certificate; none: a stranger without one.
  cert?: CertFiles;
  // Plain TCP, no TLS at all.
  plaintext?: boolean;
}

export function probe(hostPort: string, o: ProbeOptions): Promise<ProbeResult> {
  const i = hostPort.lastIndexOf(":");
  const host = hostPort.slice(0, i);
  const port = Number(hostPort.slice(i + 1));
  const first = o.alpn === "h2" ? Buffer.concat([H2_PREFACE, H2_SETTINGS]) : Buffer.from(`GET /v1/tasks/x/pieces/0 HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
  return new Promise((resolve) => {
    let settled = false;
    const done = (r: ProbeResult) => {
      if (settled) return;
      settled = true;
      socket.destroy();
      resolve(r);
    };
    const socket = o.plaintext
      ? net.connect({ host, port }, () => socket.write(first))
      : tls.connect(
          {
            host,
            port,
            // We test the server's checks, not its certificate.
            rejectUnauthorized: false,
            ALPNProtocols: [o.alpn],
            ...(o.cert ? { cert: readFileSync(o.cert.cert), key: readFileSync(o.cert.key), ca: readFileSync(o.cert.ca) } : {}),
          },
          () => socket.write(first),
        );
    let got = Buffer.alloc(0);
    socket.on("data", (d: Buffer) => {
      got = Buffer.concat([got, d]);
      // HTTP/1.1: a 403 from a role check is a refusal too.
      if (o.alpn === "http/1.1" && got.includes("\r\n")) return done(/^HTTP\/1\.1 403/.test(got.toString("latin1")) ? "refused" : "served");
      if (o.alpn === "h2" && got.length >= 9) done("served");
    });
    socket.on("error", () => done("refused"));
    socket.on("close", () => done("refused"));
    socket.setTimeout(10_000, () => done("refused"));
  });
}

export interface HttpsAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  serverFingerprint: string;
}

// One GET over a fresh TLS connection that trusts `ca` (the server's name
// unchecked: we test its certificate's issuer and what it answers), with
// `client`'s certificate or none. A refused handshake rejects.
export function httpsGet(port: number, path: string, ca: Buffer, client?: CertFiles): Promise<HttpsAnswer> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: "127.0.0.1",
        port,
        path,
        ca,
        agent: false,
        servername: "localhost",
        ...(client ? { cert: readFileSync(client.cert), key: readFileSync(client.key) } : {}),
        checkServerIdentity: () => undefined,
      },
      (res) => {
        const parts: Buffer[] = [];
        const fp = (res.socket as tls.TLSSocket).getPeerCertificate().fingerprint256;
        res.on("data", (c: Buffer) => parts.push(c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts), serverFingerprint: fp }));
      },
    );
    req.on("error", reject);
    req.end();
  });
}
