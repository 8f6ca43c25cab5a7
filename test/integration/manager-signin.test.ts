// Sign-in against a real manager: guessing is throttled per account and per
// address (429 with Retry-After, even for the right password while locked),
// parallel sign-ins hash two at a time in bounded memory, the audit log stays
// under its row cap, and a password hashed with older scrypt parameters is
// rehashed at the next sign-in.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes, scryptSync } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ADMIN_PASSWORD, fromAddress, rssBytes, startManager, type ManagerHandle } from "../helpers/manager.js";

const require = createRequire(import.meta.url);
const MiB = 1024 * 1024;

const signin = (m: ManagerHandle, name: string, password: string, from?: ReturnType<typeof fromAddress>) =>
  m.api("POST", "/api/v1/users/signin", { body: { name, password }, ...(from ? { dispatcher: from } : {}) });

describe("manager sign-in", { timeout: 180_000 }, () => {
  let m: ManagerHandle;
  let dataDir: string;
  const agents: ReturnType<typeof fromAddress>[] = [];
  const from = (addr: string) => {
    const a = fromAddress(addr);
    agents.push(a);
    return a;
  };

  before(async () => {
    dataDir = mkdtempSync(join(tmpdir(), "dfm-signin-"));
    m = await startManager({ dataDir, env: { DAMSELFLY_MANAGER_AUDIT_MAX_ROWS: "40" } });
  });
  after(async () => {
    await m?.stop();
    await Promise.all(agents.map((a) => a.close()));
    rmSync(dataDir, { recursive: true, force: true });
  });

  test("an account: 5 failures, then 429 with Retry-After, the right password included; after the wait it signs in", async () => {
    for (let i = 0; i < 5; i++) {
      const r = await signin(m, "root", `guess-${i}`, from("127.0.0.2"));
      assert.equal(r.status, 401, `guess ${i}: ${r.status}`);
    }
    // From another address: the account is what is locked.
    const locked = await signin(m, "root", ADMIN_PASSWORD, from("127.0.0.3"));
    assert.equal(locked.status, 429, JSON.stringify(locked.body));
    assert.equal(locked.body.code, "DF_ERR_SIGNIN_THROTTLED");
    const wait = Number(locked.headers["retry-after"]);
    assert.ok(Number.isInteger(wait) && wait >= 1 && wait <= 2, `Retry-After ${locked.headers["retry-after"]}`);
    assert.equal((await signin(m, "root", "guess-6")).status, 429, "no guess is checked while locked");
    await new Promise((r) => setTimeout(r, wait * 1000 + 100));
    assert.equal((await signin(m, "root", ADMIN_PASSWORD)).status, 200);
    // The failures that counted are audit rows; the refused attempts are not.
    const root = await m.signin();
    const rows = (await m.api("GET", "/api/v1/audits?limit=1000", { token: root })).body as { path: string; status_code: number }[];
    const signins = rows.filter((a) => a.path === "/api/v1/users/signin").map((a) => a.status_code);
    assert.equal(signins.filter((s) => s === 401).length, 5);
    assert.equal(signins.filter((s) => s === 429).length, 0);
  });

  test("an address: 20 failures over any names, then 429; another address is not affected", async () => {
    const mallory = from("127.0.0.4");
    for (let i = 0; i < 20; i++) assert.equal((await signin(m, `nobody-${i}`, "guess", mallory)).status, 401);
    const r = await signin(m, "nobody-new", "guess", mallory);
    assert.equal(r.status, 429);
    assert.match(r.body.message, /this address/);
    assert.ok(Number(r.headers["retry-after"]) >= 1);
    assert.equal((await signin(m, "root", ADMIN_PASSWORD, mallory)).status, 429, "the address is locked for every account");
    assert.equal((await signin(m, "nobody-new", "guess", from("127.0.0.5"))).status, 401);
    assert.equal((await signin(m, "root", ADMIN_PASSWORD, from("127.0.0.5"))).status, 200);
  });

  test("parallel sign-ins: two hashes at once (128 MiB each), eight waiting, the rest refused at once", async (t) => {
    const pid = m.proc.pid;
    const base = rssBytes(pid);
    let peak = base;
    const sampler = setInterval(() => {
      peak = Math.max(peak, rssBytes(pid));
    }, 10);
    const burst = ["127.0.0.6", "127.0.0.7", "127.0.0.8"].flatMap((addr) => {
      const agent = from(addr);
      return Array.from({ length: 8 }, (_, i) => signin(m, `burst-${addr}-${i}`, "guess", agent));
    });
    const answers = await Promise.all(burst);
    clearInterval(sampler);
    const busy = answers.filter((a) => a.status === 429);
    t.diagnostic(`24 parallel sign-ins: ${busy.length} refused at once; RSS ${(base / MiB).toFixed(0)} MiB -> peak ${(peak / MiB).toFixed(0)} MiB`);
    assert.ok(
      answers.every((a) => a.status === 401 || a.status === 429),
      answers.map((a) => a.status).join(" "),
    );
    assert.ok(busy.length >= 4, `${busy.length} of 24 refused: at most 2 + 8 are let in at once`);
    for (const b of busy) assert.match(b.body.message, /at once/);
    const grew = (peak - base) / MiB;
    // Two hashes are 256 MiB; four (libuv's whole pool, unbounded) would be 512.
    assert.ok(grew < 320, `RSS grew ${grew.toFixed(0)} MiB during the burst`);
  });

  test("the audit log keeps at most audit.maxRows (40) rows", async () => {
    const root = await m.signin("root", ADMIN_PASSWORD);
    for (let i = 0; i < 120; i++) {
      const r = await m.api("POST", "/api/v1/scheduler-clusters", { token: root, body: { name: "bad name!" } });
      assert.equal(r.status, 400);
    }
    const rows = (await m.api("GET", "/api/v1/audits?limit=1000", { token: root })).body as { id: number }[];
    assert.ok(rows.length <= 44, `${rows.length} audit rows`);
    assert.ok(rows.length >= 30, `${rows.length} audit rows: the newest are kept`);
    assert.ok(rows[0]!.id >= 120, "the newest rows are the ones kept");
  });

  test("a password hashed with N=2^14 signs in and is rehashed with N=2^17", async () => {
    await m.stop();
    const Sqlite = require("better-sqlite3") as typeof import("better-sqlite3");
    const file = join(dataDir, "manager.db");
    const salt = randomBytes(16);
    const key = scryptSync(ADMIN_PASSWORD, salt, 32, { N: 2 ** 14, r: 8, p: 1 });
    const db = new Sqlite(file);
    db.prepare("UPDATE users SET password_hash = ? WHERE name = 'root'").run(`scrypt$16384$8$1$${salt.toString("base64")}$${key.toString("base64")}`);
    db.close();
    m = await startManager({ dataDir, env: { DAMSELFLY_MANAGER_AUDIT_MAX_ROWS: "40" } });
    await m.signin("root", ADMIN_PASSWORD);
    const check = new Sqlite(file, { readonly: true });
    const stored = (check.prepare("SELECT password_hash FROM users WHERE name = 'root'").get() as { password_hash: string }).password_hash;
    check.close();
    assert.match(stored, /^scrypt\$131072\$8\$1\$/);
    await m.signin("root", ADMIN_PASSWORD);
    assert.equal((await signin(m, "root", "wrong-password")).status, 401);
  });
});
