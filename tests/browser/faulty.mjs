// A faulty release: its error-rate readings plotted above the threshold line,
// then the rollback, all on the open page.
import { BASE, SHOTS, assert, assertNoReload, log, markNoReload, release, run, signIn } from "./lib.mjs";

await run("faulty", 240_000, async (browser) => {
  const page = await browser.newPage();
  page.on("pageerror", (error) => console.error("page error:", error));
  await signIn(page);
  const id = await release("shop", "2.0.0", "registry.example/shop:2.0.0-faulty");
  await page.goto(`${BASE}/rollouts/${id}`);
  await page.locator("#lanes .lane").first().waitFor();
  await markNoReload(page);
  await page.locator('#rollout [data-state="rolled_back"]').waitFor({ timeout: 150_000 });
  await assertNoReload(page);
  log("rolled back on screen");

  const gate = page.locator('figure.gate[data-gate="error-rate"]');
  await gate.waitFor();
  const { thresholdY, threshold, above } = await gate.evaluate((figure) => {
    const line = figure.querySelector("line.threshold");
    const y = Number(line.getAttribute("y1"));
    const t = Number(line.dataset.threshold);
    const bad = [...figure.querySelectorAll("circle.reading")].filter((c) =>
      Number(c.dataset.value) > t && Number(c.getAttribute("cy")) < y);
    return { thresholdY: y, threshold: t, above: bad.length };
  });
  log(`threshold ${threshold} drawn at y=${thresholdY}; ${above} readings plotted above it`);
  assert(threshold === 0.05, "the threshold line is the gate's");
  assert(above >= 1, "a failing reading is plotted above the threshold line");
  await page.locator("#events li.ev-rollback_started").waitFor();
  await page.locator("#events li.ev-gate_bad_reading").first().waitFor();
  await page.screenshot({ path: `${SHOTS}/rollout-faulty.png`, fullPage: true });
});
