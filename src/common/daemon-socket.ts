import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

// Where the daemon's local API listens by default, and where `get` and
// `cache` look for it: a Unix socket, as Dragonfly's dfdaemon does. A
// daemon run by root serves the machine at /run/damselfly/daemon.sock; one
// run by a user serves that user under their data dir. Never a function of
// --data-dir: a client must find it without being told.

export const SYSTEM_DAEMON_SOCKET = "/run/damselfly/daemon.sock";

// The socket of a daemon run by the current user.
export function userDaemonSocket(): string {
  return join(homedir(), ".local", "share", "damselfly", "daemon.sock");
}

// The daemon's default API socket.
export function defaultDaemonSocket(): string {
  return process.getuid?.() === 0 ? SYSTEM_DAEMON_SOCKET : userDaemonSocket();
}

// The daemon a client talks to when it names none: the user's own daemon
// when one is listening there, else the machine's.
export function defaultDaemonTarget(): string {
  if (process.getuid?.() !== 0 && existsSync(userDaemonSocket())) return `unix:${userDaemonSocket()}`;
  return `unix:${SYSTEM_DAEMON_SOCKET}`;
}

// "unix:PATH" to PATH; anything else undefined.
export function socketPathOf(target: string): string | undefined {
  return target.startsWith("unix:") ? target.slice("unix:".length) : undefined;
}
