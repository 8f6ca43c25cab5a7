import { isLoopbackHost, normalizeIp } from "../common/address.js";
import { addressGroup } from "../common/cidr.js";
import { DamselflyError } from "../common/errors.js";
import type { PeerIdentity, Role } from "../common/tls/roles.js";
import type { Caller } from "../protocol/caller.js";
import { HostType, type schedulerv1 } from "../protocol/index.js";
import type { Host } from "./resources/host-manager.js";
import type { ResourceStore } from "./resources/resource-store.js";

// Who may announce what to the scheduler (docs/operations/scheduler.md),
// decided from the connection, never from the request:
//   - announce and leave calls: a peer or seed-peer certificate; a SEED host
//     only with a seed-peer certificate;
//   - a host's hostname is its certificate's name, its ip the connection's
//     remote address, and its ID, once announced, belongs to that
//     certificate's role and name (a rotated certificate keeps its host);
//   - peers, cached tasks and leaves only for hosts the caller owns.
// Without TLS (an "open" loopback cluster, or a Unix socket) all of it is as
// before: anyone may announce anything.

export const REGISTRANT_ROLES: readonly Role[] = ["peer", "seed-peer"];

export interface Registrant {
  // Whom its hosts, tasks and peers count against (limits.ts): the
  // certificate's role and name with TLS, the remote address (an IPv6 one
  // by its /64) without;
  // undefined (not counted) for a loopback or Unix-socket caller without TLS.
  readonly key: string | undefined;
  // With TLS: the certificate, which binds everything it announces.
  readonly identity: PeerIdentity | undefined;
  readonly remoteIp: string | undefined;
}

export const roleDenied = (message: string) => new DamselflyError("DF_ERR_PEER_ROLE", message);

// One spelling per address: IPv4-mapped IPv6 as IPv4, IPv6 compressed and
// lower-case (the URL parser's canonical form).
function describe(c: Caller): string {
  if (c.kind === "tls") return `a ${c.identity.role} certificate (${c.identity.name})`;
  return c.kind === "none" ? "no certificate with a role" : "no certificate";
}

// The caller of an announce or leave call, or DF_ERR_PEER_ROLE.
export function registrantOf(caller: Caller, what: string): Registrant {
  switch (caller.kind) {
    case "tls": {
      const id = caller.identity;
      if (!REGISTRANT_ROLES.includes(id.role)) throw roleDenied(`${what} needs a peer or seed-peer certificate; the caller has ${describe(caller)}`);
      const remoteIp = caller.remoteAddress === undefined ? undefined : normalizeIp(caller.remoteAddress);
      return { key: `${id.role}/${id.name}`, identity: id, remoteIp };
    }
    case "open": {
      const remoteIp = caller.remoteAddress === undefined ? undefined : normalizeIp(caller.remoteAddress);
      // A loopback cluster's daemons all share 127.0.0.1: counting them as one
      // registrant would cap the cluster, not a stranger.
      const key = remoteIp === undefined || isLoopbackHost(remoteIp) ? undefined : `address/${addressGroup(remoteIp)}`;
      return { key, identity: undefined, remoteIp };
    }
    case "local":
      return { key: undefined, identity: undefined, remoteIp: undefined };
    case "none":
      throw roleDenied(`${what} needs a peer or seed-peer certificate; the caller has ${describe(caller)}`);
  }
}

// Any role may make the call (StatTask, ListTaskPeers), but with TLS only a
// certificate that names one.
export function requireAnyRole(caller: Caller, what: string): void {
  if (caller.kind === "none") throw roleDenied(`${what} needs a certificate of the cluster CA with a role; the caller has ${describe(caller)}`);
}

// Only the manager (PreheatTask, DeleteTask).
export function requireManager(caller: Caller, what: string): void {
  if (caller.kind === "open" || caller.kind === "local") return;
  if (caller.kind === "tls" && caller.identity.role === "manager") return;
  throw roleDenied(`${what} needs a manager certificate; the caller has ${describe(caller)}`);
}

// A host announcement the caller may make: with TLS, a SEED host only from a
// seed-peer certificate, the certificate's own name and connection address,
// and a host ID nobody else owns.
export function checkHostAnnouncement(r: Registrant, msg: schedulerv1.Host, existing: Host | undefined): void {
  const id = r.identity;
  if (!id) return;
  if (msg.type === HostType.SEED && id.role !== "seed-peer") throw roleDenied(`a seed host needs a seed-peer certificate, not a ${id.role} one (${id.name})`);
  if (msg.hostname !== id.name) throw roleDenied(`host ${msg.id} says it is ${JSON.stringify(msg.hostname)}; its certificate names ${JSON.stringify(id.name)}`);
  if (r.remoteIp === undefined || normalizeIp(msg.ip) !== r.remoteIp) {
    throw roleDenied(`host ${msg.id} says its address is ${msg.ip}; it connects from ${r.remoteIp ?? "an unknown address"}`);
  }
  if (existing?.owner !== undefined && existing.owner !== r.key) throw roleDenied(`host ${msg.id} belongs to another certificate`);
}

// With TLS, only the certificate that announced a host may speak for it.
export function checkOwner(r: Registrant, host: Host): void {
  if (r.identity && host.owner !== r.key) throw roleDenied(`host ${host.id} belongs to another certificate`);
}

// With TLS, a peer ID already used on another certificate's host is not
// the caller's to take over (registering it would replace that peer).
export function checkPeerId(r: Registrant, store: ResourceStore, peerId: string): void {
  if (!r.identity) return;
  const p = store.peers.get(peerId);
  const h = p && store.hosts.get(p.hostId);
  if (h && h.owner !== r.key) throw roleDenied(`peer ${peerId} belongs to another certificate's host`);
}
