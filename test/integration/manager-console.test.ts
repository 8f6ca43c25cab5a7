// The console in a real browser (playwright-core driving Debian's chromium)
// against a manager with a live cluster: sign in (a wrong password first),
// see the scheduler, the seed peer and the peer, create a preheat job and see
// it succeed — and the origin served the file once, to the seed peer — find
// the task's hosts, and make a token that is shown once; all of it under the
// manager's Content-Security-Policy.
import { test } from "node:test";
import assert from "node:assert/strict";
import { NO_BROWSER, openBrowserPage } from "../helpers/browser.js";
import { startCluster } from "../helpers/cluster.js";
import { ADMIN_PASSWORD, startManager } from "../helpers/manager.js";
import { startOrigin } from "../helpers/origin.js";

const MiB = 1024 * 1024;

test("console: sign in, see the cluster and its peers, preheat a file and see it succeed", {
  timeout: 120_000,
  skip: NO_BROWSER,
}, async (t) => {
  const origin = await startOrigin();
  t.after(() => origin.close());
  const data = origin.addRandomFile("/console/file.bin", 4 * MiB, "console");
  const manager = await startManager({ t });
  await startCluster({ peers: 1, t, schedulerArgs: ["--manager", manager.url, "--manager-interval", "500ms"], daemonArgs: ["--announce-interval", "1s"] });

  const { page, cspViolations: violations } = await openBrowserPage(t);
  const landing = await page.goto(manager.url + "/");
  assert.match(String(landing?.headers()["content-security-policy"]), /frame-ancestors 'none'/);

  // A wrong password is refused with the message and its code.
  await page.fill("input[name=name]", "root");
  await page.fill("input[name=password]", "not-the-password");
  await page.click("button[type=submit]");
  await page.getByRole("alert").filter({ hasText: "DF_ERR_UNAUTHENTICATED" }).waitFor();

  await page.fill("input[name=password]", ADMIN_PASSWORD);
  await page.click("button[type=submit]");
  await page.getByRole("heading", { name: "Clusters" }).waitFor();
  // The scheduler registered and reports its hosts (refreshed every 2 s).
  await page.locator("td", { hasText: "active" }).first().waitFor();
  await page.locator("table.hosts tr", { hasText: "seed peer" }).waitFor();
  await page.locator("table.hosts tr", { hasText: "peer-0" }).waitFor();
  await page.locator("figure.chart").waitFor();

  // Preheat from the Jobs page.
  await page.click("a[href='#jobs']");
  await page.getByText("No job yet.").waitFor();
  await page.fill("input[name=url]", origin.url("/console/file.bin"));
  await page.click("button:has-text('Preheat')");
  const row = page.locator("tr[data-job]").first();
  await row.locator(".badge.success").waitFor({ timeout: 60_000 });
  assert.match(await row.innerText(), /1 preheated, 0 failed/);
  assert.equal(origin.bytesSent("/console/file.bin"), data.length, "the seed peer fetched the file once");

  // The Tasks page finds the hosts holding it.
  await page.click("a[href='#tasks']");
  await page.fill("input[name=task]", origin.url("/console/file.bin"));
  await page.click("button:has-text('Find hosts')");
  await page.locator("tr", { hasText: "seed peer" }).filter({ hasText: "succeeded" }).waitFor();

  // A token is shown once, then listed without its value.
  await page.click("a[href='#access']");
  await page.fill("input[name=tokenName]", "from-the-console");
  await page.click("button:has-text('Create token')");
  const secret = await page.locator("code.secret").innerText();
  assert.match(secret, /^dfp_/);
  await page.locator("td", { hasText: "from-the-console" }).waitFor();
  await page.reload();
  await page.locator("td", { hasText: "from-the-console" }).waitFor();
  assert.equal(await page.locator("code.secret").count(), 0, "the token is not shown again");
  assert.ok(!(await page.content()).includes(secret));
  assert.deepEqual(violations, [], "nothing was blocked by the CSP");
});
