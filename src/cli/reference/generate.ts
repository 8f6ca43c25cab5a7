// The reference under docs/reference/, generated from the code: config keys,
// CLI commands, error codes, metrics and the scheduler's peer states.
// Side-effect free, so the unit test (test/unit/docs-reference.test.ts) can
// compare it with the files on disk; write.ts (`npm run docs:reference`)
// writes it.
import { homedir } from "node:os";
import { defaultDataDir } from "../../common/schemas.js";
import { defaultDaemonSocket } from "../../common/daemon-socket.js";
import { buildProgram } from "../main.js";
import { cliPage } from "./cli-page.js";
import { configPage, DATA_DIR_NOTE } from "./config-page.js";
import { errorsPage } from "./errors-page.js";
import { metricsPage } from "./metrics-page.js";
import { peerStatesPage } from "./peer-states-page.js";

export const REFERENCE_DIR = "docs/reference";

// Defaults that depend on the machine (the user's data dir) are written as
// names, so the files are the same whoever generates them.
function machineIndependent(text: string): string {
  const note =
    "`DEFAULT_DATA_DIR` is `~/.local/share/damselfly`, or `/var/lib/damselfly` when run as root; `DEFAULT_DAEMON_SOCKET` is `~/.local/share/damselfly/daemon.sock`, or `/run/damselfly/daemon.sock` when run as root.";
  const home = homedir();
  const out = text.split(defaultDaemonSocket()).join("DEFAULT_DAEMON_SOCKET").split(defaultDataDir()).join("DEFAULT_DATA_DIR");
  return (home.length > 1 ? out.split(home).join("~") : out).replace(DATA_DIR_NOTE, note);
}

// File name (in docs/reference/) -> content.
export async function generateReference(): Promise<Map<string, string>> {
  const program = await buildProgram();
  const pages = new Map<string, string>([
    ["config.md", configPage(program)],
    ["cli.md", cliPage(program)],
    ["errors.md", errorsPage()],
    ["metrics.md", await metricsPage()],
    ["peer-states.md", peerStatesPage()],
  ]);
  for (const [name, text] of pages) pages.set(name, machineIndependent(text));
  return pages;
}
