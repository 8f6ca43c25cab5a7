import { isLoopbackHost } from "../address.js";
import { DamselflyError } from "../errors.js";
import type { Logger } from "../logger.js";
import { TlsIdentity } from "./identity.js";

export interface TlsConfig {
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

// All three files, or none (then the component runs without TLS).
export function loadTlsIdentity(cfg: TlsConfig, logger?: Logger, opts: { pollMs?: number; watch?: boolean } = {}): TlsIdentity | undefined {
  const given = [cfg.ca, cfg.cert, cfg.key].filter((v) => v !== "").length;
  if (given === 0) return undefined;
  if (given !== 3) throw new DamselflyError("DF_ERR_CONFIG", "--tls-ca, --tls-cert and --tls-key go together (give all three, or none)");
  return TlsIdentity.load(cfg, { logger, ...opts });
}

// Without certificates a component serves only loopback, unless the
// operator says --insecure (and then it says so at start): a newcomer's
// cluster is never reachable unauthenticated by accident.
export function checkBind(what: string, host: string, tls: boolean, insecure: boolean, logger?: Logger): void {
  if (tls || isLoopbackHost(host)) return;
  if (!insecure) {
    throw new DamselflyError(
      "DF_ERR_INSECURE_BIND",
      `${what} would listen on ${host} without TLS: give --tls-ca/--tls-cert/--tls-key (see damselfly certs), listen on 127.0.0.1, or pass --insecure on a network you trust`,
    );
  }
  logger?.warn({ listener: what, host }, "INSECURE: serving without TLS on a non-loopback address (--insecure): anyone who can reach it is trusted");
}

// A listener left at its default wildcard address serves loopback only
// while there are no certificates (and no --insecure): `damselfly scheduler`
// and `damselfly daemon` with no flags keep starting, reachable from this
// machine alone. An explicit non-loopback address is checked by checkBind.
export function defaultedListen(value: string, schemaDefault: string, tls: boolean, insecure: boolean): string {
  if (tls || insecure || value !== schemaDefault) return value;
  return value.replace(/^0\.0\.0\.0:/, "127.0.0.1:").replace(/^\[::\]:/, "[::1]:");
}
