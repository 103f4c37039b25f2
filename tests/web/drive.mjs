// Drive the tffreeze page in headless Chromium (puppeteer-core, from web/node_modules) and
// print what it showed as JSON: the test in tests/e2e/test_web_page.py gives the plan as one
// JSON argument: {url, chromium, files, token, options, actions, out, screenshot}.
import { createRequire } from "node:module";
import { writeFileSync } from "node:fs";
import { join } from "node:path";

const plan = JSON.parse(process.argv[2]);
const require = createRequire(join(plan.web, "package.json"));
const puppeteer = require("puppeteer-core");

const browser = await puppeteer.launch({
  executablePath: plan.chromium,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
const out = { console: [] };
try {
  const page = await browser.newPage();
  page.on("console", (m) => out.console.push(m.text()));
  page.on("pageerror", (e) => out.console.push("pageerror: " + e.message));
  await page.setViewport({ width: 1100, height: 1000 });
  await page.goto(plan.url, { waitUntil: "load" });
  await page.waitForFunction(() => document.body.dataset.state === "ready", { timeout: 30000 });
  if (plan.token !== undefined) {
    await page.type("#token", plan.token);
    await page.$eval("#token", (el) => el.dispatchEvent(new Event("change")));
  }
  for (const [id, value] of Object.entries(plan.options || {})) {
    if (typeof value === "boolean") await page.$eval("#" + id, (el, v) => (el.checked = v), value);
    else await page.$eval("#" + id, (el, v) => (el.value = v), value);
  }
  const input = await page.$("#source");
  await input.uploadFile(...plan.files);
  for (const action of plan.actions) {
    await page.click("#" + action);
    await page.waitForFunction(() => ["done", "error"].includes(document.body.dataset.state), { timeout: 240000 });
    const shown = await page.evaluate(() => {
      const rows = (id) => Array.from(document.querySelectorAll(`#${id} tbody tr`), (tr) =>
        Array.from(tr.children, (td) => td.textContent));
      const error = document.getElementById("error");
      return {
        state: document.body.dataset.state,
        inputs: rows("inputs"),
        outputs: rows("outputs"),
        error: error.hidden ? "" : error.textContent,
        candidates: Array.from(document.querySelectorAll("#candidates li"), (li) => li.textContent),
        progress: document.getElementById("progress-text").textContent,
      };
    });
    out[action] = shown;
    if (action === "freeze" && shown.state === "done") {
      for (const id of ["download-pb", "download-manifest"]) {
        const b64 = await page.$eval("#" + id, async (a) => {
          const bytes = new Uint8Array(await (await fetch(a.href)).arrayBuffer());
          let s = "";
          for (const b of bytes) s += String.fromCharCode(b);
          return btoa(s);
        });
        const name = await page.$eval("#" + id, (a) => a.download);
        writeFileSync(join(plan.out, name), Buffer.from(b64, "base64"));
        out[id] = name;
      }
    }
  }
  if (plan.screenshot) await page.screenshot({ path: plan.screenshot, fullPage: true });
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
