// The console's preheat form with an hf:// URL, in a real browser
// (playwright-core driving Debian's chromium): a private repository,
// recursive, with an include glob and the hub token typed into a password
// field; the job succeeds for the selected files only, the CDN sent the LFS
// file once (to the seed peer), and the token is shown nowhere afterwards —
// not in the page, not in the job's args.
import { test } from "node:test";
import assert from "node:assert/strict";
import { NO_BROWSER, openBrowserPage, signInAsRoot } from "../helpers/browser.js";
import { startCluster } from "../helpers/cluster.js";
import { startHub } from "../helpers/hub.js";
import { startManager } from "../helpers/manager.js";
import { randomBytesSeeded, sha256Hex } from "../helpers/origin.js";

const MiB = 1024 * 1024;
const HUB_TOKEN = "hf_console_Token_4417";

test("console: preheat a private hf:// repository recursively with a hub token", {
  timeout: 120_000,
  skip: NO_BROWSER,
}, async (t) => {
  const hub = await startHub();
  t.after(() => hub.close());
  const weights = randomBytesSeeded(2 * MiB, "console-hf");
  hub.repos.create("model", "acme/private", { private: true, tokens: [HUB_TOKEN] }).commit({
    "config.json": Buffer.from('{"private": true}\n'),
    "model.safetensors": { data: weights, lfs: true },
    "README.md": Buffer.from("# not preheated\n"),
  });
  const manager = await startManager({ t, args: ["--hf-endpoint", hub.url] });
  await startCluster({ peers: 1, t, schedulerArgs: ["--manager", manager.url, "--manager-interval", "500ms"] });

  const { page } = await openBrowserPage(t);
  await page.goto(manager.url + "/");
  await signInAsRoot(page, "Clusters");
  await page.locator("td", { hasText: "active" }).first().waitFor();

  await page.click("a[href='#jobs']");
  await page.fill("input[name=url]", "hf://acme/private");
  await page.check("input[name=recursive]");
  await page.fill("input[name=include]", "*.json, *.safetensors");
  assert.equal(await page.getAttribute("input[name=hubToken]", "type"), "password");
  await page.fill("input[name=hubToken]", HUB_TOKEN);
  await page.click("button:has-text('Preheat')");
  const row = page.locator("tr[data-job]").first();
  await row.locator(".badge.success").waitFor({ timeout: 60_000 });
  assert.match(String(await row.textContent()), /preheat file -r/);
  assert.match(String(await row.textContent()), /2 preheated, 0 failed/);
  assert.equal(hub.cdnBytesFor(sha256Hex(weights)), weights.length, "the seed peer fetched the LFS file once");

  // The form is cleared and the token is nowhere in the page or the job.
  assert.equal(await page.locator("input[name=url]").inputValue(), "");
  await page.reload();
  await page.locator("tr[data-job]").first().waitFor();
  assert.ok(!(await page.content()).includes(HUB_TOKEN));
  const root = await manager.signin();
  const jobs = (await manager.api("GET", "/api/v1/jobs", { token: root })).body as { args: Record<string, unknown> }[];
  assert.equal(jobs[0]?.args.hf_token, "[redacted]");
  assert.ok(!JSON.stringify(jobs).includes(HUB_TOKEN));
});
