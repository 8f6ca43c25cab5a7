// The console's browser tests: Debian's chromium driven by playwright-core
// (which downloads no browser). One page per test, closed after it, with the
// Content-Security-Policy violations the browser reports collected, so each
// test can assert the console works under the manager's CSP.
import { existsSync } from "node:fs";
import type { TestContext } from "node:test";
import { chromium, type Page } from "playwright-core";
import { ADMIN_PASSWORD } from "./manager.js";

export const CHROMIUM = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find((p) => existsSync(p));
if (!CHROMIUM && process.env["DAMSELFLY_REQUIRE_BROWSER"] === "1")
  throw new Error("browser test required but chromium is not installed (apt-get install chromium)");
export const NO_BROWSER = CHROMIUM ? false : "chromium not installed (apt-get install chromium)";

export interface ConsolePage {
  page: Page;
  // The browser's console messages about blocked scripts, styles or requests.
  cspViolations: string[];
}

export async function openBrowserPage(t: TestContext): Promise<ConsolePage> {
  if (!CHROMIUM) throw new Error("chromium not installed");
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] });
  t.after(() => browser.close());
  const page = await browser.newPage({ viewport: { width: 1366, height: 768 } });
  page.setDefaultTimeout(20_000);
  const cspViolations: string[] = [];
  page.on("console", (m) => {
    if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
  });
  return { page, cspViolations };
}

// Signs in as root on the console's sign-in form, then waits for the heading
// of the page it lands on.
export async function signInAsRoot(page: Page, heading: string): Promise<void> {
  await page.fill("input[name=name]", "root");
  await page.fill("input[name=password]", ADMIN_PASSWORD);
  await page.click("button[type=submit]");
  await page.getByRole("heading", { name: heading }).waitFor();
}
