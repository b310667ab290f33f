// Shared helpers for the dashboard's browser tests: headless Debian Chromium
// driven by playwright-core, against the server in MERIDIAN_URL.
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

export const BASE = process.env.MERIDIAN_URL;
export const TOKEN = process.env.MERIDIAN_TOKEN;
export const SHOTS = process.env.SCREENSHOT_DIR ?? "target/screenshots";
if (!BASE || !TOKEN) throw new Error("MERIDIAN_URL and MERIDIAN_TOKEN must be set");

const started = Date.now();
export const log = (...args) => console.log(`[${((Date.now() - started) / 1000).toFixed(1)}s]`, ...args);

/// A fresh browser with its own profile (a new user data dir); `close`
/// removes it. Pages have their own sessionStorage, so each signs in alone.
export async function launch() {
  const profile = mkdtempSync(join(tmpdir(), "meridian-chromium-"));
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    viewport: { width: 1280, height: 900 },
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  mkdirSync(SHOTS, { recursive: true });
  return {
    browser,
    async close() {
      await browser.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/// The API, straight, as the test's own client.
export async function api(path, { method = "GET", body, token = TOKEN } = {}) {
  const response = await fetch(`${BASE}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${JSON.stringify(json)}`);
  return json;
}

export async function release(application, version, image) {
  const r = await api("/api/v1/releases", { method: "POST", body: { application, version, image } });
  return r.id;
}

/// Opens the dashboard and signs in through the form.
export async function signIn(page, token = TOKEN) {
  await page.goto(BASE);
  await page.getByLabel("API token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator("#who").getByText("Sign out").waitFor();
}

/// Marks the page so a reload (which would lose the mark) can be detected.
export async function markNoReload(page) {
  await page.evaluate(() => { window.__noReload = true; });
}
export async function assertNoReload(page) {
  const still = await page.evaluate(() => window.__noReload === true);
  if (!still) throw new Error("the page reloaded");
}

export function assert(condition, message) {
  if (!condition) throw new Error(`assertion failed: ${message}`);
}

/// Runs `body` with a browser, failing (exit 1) on any error or after `limitMs`.
export async function run(name, limitMs, body) {
  const timer = setTimeout(() => { console.error(`${name}: timed out after ${limitMs} ms`); process.exit(1); }, limitMs);
  const b = await launch();
  try {
    await body(b.browser);
    log(`${name}: ok`);
  } catch (error) {
    console.error(`${name}: FAILED:`, error);
    process.exitCode = 1;
  } finally {
    clearTimeout(timer);
    await b.close();
  }
}
