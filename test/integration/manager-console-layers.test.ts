// The console's Layers page in a real browser (playwright-core driving
// Debian's chromium): once peer-0 pulled an image's layers through its
// mirror, the page, given the image reference and platform, lists every
// layer with peer-0 as its holder and peer-1 as none's; an image at a
// registry no daemon pulled from is refused with its code.
import { test } from "node:test";
import assert from "node:assert/strict";
import { NO_BROWSER, openBrowserPage, signInAsRoot } from "../helpers/browser.js";
import { startCluster } from "../helpers/cluster.js";
import { startManager, waitForSchedulers } from "../helpers/manager.js";
import { pullBlobsThrough, registryWithImage } from "../helpers/mirror-setup.js";
import { haveRegistry } from "../helpers/registry.js";
import { tempDir } from "../helpers/store.js";

// Over the daemons' minP2pSize (1 MiB): smaller blobs bypass P2P, no task.
const MiB = 1024 * 1024;

const have = await haveRegistry();
const skip = NO_BROWSER || !have ? "docker-registry not installed" : false;

test("console Layers page: the node holding each layer of an image", { timeout: 120_000, skip }, async (t) => {
  const dir = tempDir(t, "dfm-console-layers-");
  const { registry, image, ref } = await registryWithImage(t, dir, { layers: [2 * MiB, 1.5 * MiB], seed: "console-layers" });
  const manager = await startManager({ t });
  const cluster = await startCluster({ peers: 2, seed: false, t, schedulerArgs: ["--manager", manager.url, "--manager-interval", "500ms"] });
  const root = await manager.signin();
  await waitForSchedulers(manager, root);
  const [a, b] = cluster.peers as [(typeof cluster.peers)[0], (typeof cluster.peers)[0]];
  await pullBlobsThrough(a.proxyUrl, registry, image);

  const { page, cspViolations: violations } = await openBrowserPage(t);
  await page.goto(manager.url + "/#layers");
  await signInAsRoot(page, "Layers");

  await page.fill("input[name=image]", ref);
  await page.fill("input[name=platform]", "linux/amd64");
  await page.click("button:has-text('Find holders')");
  for (const l of image.layers) {
    const row = page.locator(`table.layers tr[data-digest='${l.digest}']`);
    await row.waitFor();
    assert.equal(await row.locator("td.nodes").textContent(), a.name, `holder of ${l.digest}`);
    assert.doesNotMatch((await row.textContent()) ?? "", new RegExp(b.name));
  }
  assert.equal(await page.locator("table.layers tbody tr").count(), image.layers.length);

  // A registry none of the daemons pulled from: refused, nothing fetched there.
  await page.fill("input[name=image]", "127.0.0.1:9/evil/app:1");
  await page.click("button:has-text('Find holders')");
  await page.getByRole("alert").filter({ hasText: "DF_ERR_INVALID_REQUEST" }).waitFor();
  assert.equal(await page.locator("table.layers").count(), 0);
  assert.deepEqual(violations, []);
});
