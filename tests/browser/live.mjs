// Sign in, watch a good release go green stage by stage without reloading,
// pause a rollout through the confirmation dialog, and check roles and widths.
import { BASE, SHOTS, api, assert, assertNoReload, log, markNoReload, release, run, signIn } from "./lib.mjs";

await run("live", 240_000, async (browser) => {
  const page = await browser.newPage();
  page.on("pageerror", (error) => console.error("page error:", error));

  // Sign-in: a refused token says so; a good one shows the rollouts.
  await page.goto(BASE);
  await page.getByText("Sign in with an API token").waitFor();
  await page.getByLabel("API token").fill("mrd_not-a-token");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByText("Your token was refused").waitFor();
  await signIn(page);
  await page.getByRole("heading", { name: "Rollouts" }).waitFor();
  log("signed in");

  // A new rollout shows up in the list without reloading.
  await markNoReload(page);
  const id = await release("shop", "1.0.0", "registry.example/shop:1.0.0");
  const link = page.locator(`tr[data-id="${id}"] a`);
  await link.waitFor({ timeout: 5000 });
  await assertNoReload(page);
  log("rollout appeared in the list");
  await link.click();
  await page.locator("#lanes .lane").first().waitFor();
  await markNoReload(page);

  // Record when each cluster chip first shows `rolled out`, and whether a
  // bake countdown was ever shown.
  await page.evaluate(() => {
    window.__seen = {};
    window.__bake = false;
    const look = () => {
      for (const chip of document.querySelectorAll("li.chip[data-cluster]")) {
        const s = chip.querySelector("[data-state]")?.dataset.state;
        if (s === "rolled_out" && !window.__seen[chip.dataset.cluster]) window.__seen[chip.dataset.cluster] = Date.now();
      }
      if (document.querySelector("[data-bake-end]")) window.__bake = true;
    };
    look();
    new MutationObserver(look).observe(document.getElementById("view"), { subtree: true, childList: true, characterData: true });
  });
  await page.locator('#rollout [data-state="succeeded"]').waitFor({ timeout: 120_000 });
  await assertNoReload(page);
  const seen = await page.evaluate(() => window.__seen);
  const bake = await page.evaluate(() => window.__bake);
  const rollout = await api(`/api/v1/rollouts/${id}`);
  const { items: events } = await api(`/api/v1/rollouts/${id}/events`);
  const lags = [];
  let previousStageLast = 0;
  for (const stage of rollout.stages) {
    let stageFirst = Infinity, stageLast = 0;
    for (const t of stage.targets) {
      assert(seen[t.cluster], `chip ${t.cluster} was seen rolled out`);
      const event = events.find((e) => e.kind === "target_rolled_out" && e.cluster === t.cluster);
      assert(event, `event target_rolled_out for ${t.cluster}`);
      lags.push({ cluster: t.cluster, lagMs: seen[t.cluster] - Date.parse(event.created_at) });
      stageFirst = Math.min(stageFirst, seen[t.cluster]);
      stageLast = Math.max(stageLast, seen[t.cluster]);
    }
    assert(stageFirst >= previousStageLast, `stage ${stage.name} went green after the one before`);
    previousStageLast = stageLast;
  }
  log("event-to-screen lag per cluster (ms):", JSON.stringify(lags));
  const worst = Math.max(...lags.map((l) => l.lagMs));
  assert(worst < 1500, `every chip turned green within ~1 s of its event (worst ${worst} ms)`);
  assert(bake, "a bake countdown was shown");
  await page.screenshot({ path: `${SHOTS}/rollout-succeeded.png`, fullPage: true });

  // Pause a slow rollout through the dialog, by keyboard where it counts.
  const slow = await release("slow", "1.0.0", "registry.example/slow:1.0.0");
  await page.goto(`${BASE}/rollouts/${slow}`);
  await markNoReload(page);
  const pause = page.getByRole("button", { name: "Pause" });
  await pause.waitFor({ timeout: 30_000 });
  // The current stage counts its bake time down, once a second.
  const bakeLeft = page.locator("[data-bake-end]");
  await bakeLeft.filter({ hasText: "left" }).waitFor({ timeout: 30_000 });
  const before = await bakeLeft.textContent();
  // (Within a few seconds: on a loaded machine the engine may restart the bake.)
  await page.waitForFunction((text) => {
    const el = document.querySelector("[data-bake-end]");
    return el && el.textContent.endsWith("left") && el.textContent !== text;
  }, before, { timeout: 5000 });
  await page.screenshot({ path: `${SHOTS}/rollout-baking.png`, fullPage: true });
  await pause.focus();
  await page.keyboard.press("Enter");
  const dialog = page.locator("dialog#confirm");
  await dialog.waitFor({ state: "visible" });
  await page.keyboard.type("checking the canary dashboards");
  await dialog.getByRole("button", { name: "Pause" }).click();
  await page.locator('#rollout [data-state="paused"]').waitFor({ timeout: 10_000 });
  await page.locator("#events li.ev-paused").filter({ hasText: "bootstrap" }).waitFor({ timeout: 10_000 });
  await page.getByText("checking the canary dashboards").first().waitFor();
  await page.getByRole("button", { name: "Resume" }).waitFor();
  await assertNoReload(page);
  log("paused through the dialog; state and event shown");
  await page.screenshot({ path: `${SHOTS}/rollout-paused.png`, fullPage: true });

  // The list: active first, the paused one flagged in words.
  await page.goto(BASE);
  const row = page.locator(`tr[data-id="${slow}"]`);
  await row.getByText("needs attention").waitFor();
  const firstId = await page.locator("#rollouts tbody tr").first().getAttribute("data-id");
  assert(firstId === slow, "the active rollout is listed first");
  await page.screenshot({ path: `${SHOTS}/rollouts.png`, fullPage: true });
  // Filters.
  await page.getByLabel("State").selectOption("succeeded");
  await page.locator(`tr[data-id="${slow}"]`).waitFor({ state: "detached" });
  await page.locator(`tr[data-id="${id}"]`).waitFor();
  await page.getByLabel("State").selectOption("");

  // Fleet: shop 1.0.0 everywhere it went.
  await page.goto(`${BASE}/fleet`);
  await page.locator('tr[data-cluster="use1-canary"]').getByText("1.0.0").first().waitFor();
  await page.screenshot({ path: `${SHOTS}/fleet.png`, fullPage: true });

  // Phone width: nothing wider than the screen.
  await page.setViewportSize({ width: 390, height: 844 });
  for (const path of ["/", `/rollouts/${slow}`, "/fleet"]) {
    await page.goto(`${BASE}${path}`);
    await page.locator("#who").getByText("Sign out").waitFor();
    await page.waitForTimeout(300);
    const wide = await page.evaluate(() => document.documentElement.scrollWidth);
    assert(wide <= 391, `${path} fits a phone (scrollWidth ${wide})`);
  }
  await page.goto(`${BASE}/rollouts/${slow}`);
  await page.getByRole("button", { name: "Resume" }).waitFor();
  await page.screenshot({ path: `${SHOTS}/rollout-phone.png`, fullPage: true });

  // A dropped stream reconnects and catches up on what happened meanwhile.
  await page.setViewportSize({ width: 1280, height: 900 });
  await markNoReload(page);
  await page.context().setOffline(true);
  await page.waitForTimeout(1000);
  await api(`/api/v1/rollouts/${slow}/resume`, { method: "POST", body: { reason: "while the page was offline" } });
  await page.waitForTimeout(1500);
  await page.context().setOffline(false);
  const offlineAt = Date.now();
  await page.locator("#events li.ev-resumed").waitFor({ timeout: 15_000 }).catch(async (error) => {
    const { items } = await api(`/api/v1/rollouts/${slow}/events`);
    console.error("status:", await page.locator("#status").textContent(), "events:", items.map((e) => e.kind).join(","));
    throw error;
  });
  await page.locator('#rollout [data-state="running"]').waitFor({ timeout: 5_000 });
  await assertNoReload(page);
  log(`caught up ${Date.now() - offlineAt} ms after the network came back`);

  // Roll back through the dialog; Escape first cancels without acting.
  await page.getByRole("button", { name: "Roll back" }).click();
  await page.locator("dialog#confirm").waitFor({ state: "visible" });
  await page.keyboard.press("Escape");
  await page.locator("dialog#confirm").waitFor({ state: "hidden" });
  await page.getByRole("button", { name: "Roll back" }).click();
  const confirm = page.locator("dialog#confirm");
  await confirm.getByRole("button", { name: "Roll back" }).click();
  await page.waitForTimeout(200);
  assert(await confirm.isVisible(), "no reason, no action: the dialog stays open");
  await page.getByLabel("Reason").fill("canary looks wrong");
  await confirm.getByRole("button", { name: "Roll back" }).click();
  await page.locator('#rollout [data-state="rolled_back"]').waitFor({ timeout: 30_000 }).catch(async (error) => {
    const r = await api(`/api/v1/rollouts/${slow}`);
    console.error("dialog:", await page.locator("#confirm-error").textContent(), "open:", await confirm.isVisible(),
      "state:", r.state, r.reason, "page:", await page.locator("#rollout h1").textContent());
    throw error;
  });
  await page.locator("#events li.ev-rollback_started").waitFor();
  assert(await page.locator("#actions button").count() === 0, "no actions on a finished rollout");
  log("rolled back through the dialog");

  // A viewer sees the rollout but no buttons.
  const viewer = await api("/api/v1/tokens", { method: "POST", body: { name: "vera", role: "viewer" } });
  const other = await browser.newPage();
  await signIn(other, viewer.token);
  await other.locator("#who").getByText("viewer").waitFor();
  await other.goto(`${BASE}/rollouts/${slow}`);
  await other.locator('#rollout [data-state="rolled_back"]').waitFor();
  assert(await other.locator("#actions button").count() === 0, "a viewer gets no action buttons");
  log("viewer sees no actions");
});
