// Drives the lab in real headless Chromium as a learner would (typing, sliders moved with the
// keyboard, buttons, tabs, hovering) and prints what the page showed as one JSON line; the Rust
// test (tests/lab_browser.rs) checks it against the CLI. Screenshots of each view go to SHOTS.
//
// node lab_e2e.mjs URL SHOTS_DIR METRICS_JSONL PROMPT
import { chromium } from "playwright-core";
import { appendFileSync, readFileSync } from "node:fs";

const [url, shots, metrics, prompt] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.MINILLM_CHROMIUM || "/usr/bin/chromium",
  headless: true,
  // The flags ENVIRONMENT.md found to work here; playwright makes a fresh profile per launch.
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
const report = { console_errors: [] };
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 1000 } });
  page.on("pageerror", (e) => report.console_errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") report.console_errors.push(m.text()); });

  const settled = () => page.evaluate(() => Number(document.body.dataset.settled || 0));
  // Performs `action`, then waits until the page has finished the update it started.
  async function act(action) {
    const before = await settled();
    await action();
    await page.waitForFunction((n) => Number(document.body.dataset.settled || 0) > n, before, { timeout: 20000 });
  }
  const shot = (name) => page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
  const bars = () => page.$$eval("#bars .bar", (rows) => rows.map((r) => ({
    id: Number(r.dataset.id), prob: Number(r.dataset.prob), shaped: Number(r.dataset.shaped),
    dropped: r.classList.contains("dropped") })));
  const tab = (name) => act(() => page.click(`#tab-${name}`));

  await page.goto(url);
  await page.waitForSelector("#tok-bpe");
  report.title = await page.title();

  // Tokens: the learner types a prompt.
  await act(() => page.fill("#text", prompt));
  report.bpe_ids = await page.$$eval("#tok-bpe .token", (t) => t.map((x) => Number(x.dataset.id)));
  report.counts = await page.$$eval(".tokenizer", (t) => Object.fromEntries(t.map((x) => [x.id, Number(x.dataset.count)])));
  await page.hover("#tok-bpe .token");
  report.token_title = await page.$eval("#tok-bpe .token", (t) => t.title);
  await shot("tokens");

  // Next token: the bars, then the temperature slider moved with the keyboard, then top-k.
  await tab("next");
  report.bars = await bars();
  await page.focus("#temperature");
  for (let k = 0; k < 10; k++) await act(() => page.keyboard.press("ArrowLeft"));
  report.temperature = Number(await page.inputValue("#temperature"));
  report.bars_cold = await bars();
  await page.focus("#top_k");
  for (let k = 0; k < 3; k++) await act(() => page.keyboard.press("ArrowRight"));
  report.top_k = Number(await page.inputValue("#top_k"));
  report.bars_top_k = await bars();
  report.kept_text = await page.textContent("#kept");
  await shot("next-token");
  const ids = () => page.evaluate(() => state.tokens.map((t) => t.id));
  report.before_step = await ids();
  await act(() => page.click("#step"));
  report.after_step = await ids();
  report.sampled_text = await page.textContent("#sampled");
  report.text_after_step = await page.inputValue("#text");
  await page.click("#generate");
  await page.waitForFunction(() => !document.getElementById("generate").disabled && document.getElementById("generated").textContent.length > 0, null, { timeout: 20000 });
  report.generated = await page.textContent("#generated");

  // Attention: layer 0, head 0.
  await tab("attention");
  await act(() => page.selectOption("#layer", "0"));
  await act(() => page.selectOption("#head", "0"));
  report.attention_tokens = Number(await page.getAttribute("#heatmap", "data-tokens"));
  report.cells = await page.$$eval("#heatmap .cell", (c) => c.length);
  report.masked = await page.$$eval("#heatmap .cell.masked", (c) => c.map((x) => [Number(x.dataset.i), Number(x.dataset.j)]));
  report.first_row = await page.$$eval('#heatmap .cell[data-i="0"]', (c) => c.map((x) => Number(x.dataset.w)));
  await page.hover('#heatmap .cell[data-i="1"][data-j="0"]');
  report.cell_info = await page.textContent("#cell-info");
  await page.focus("#heatmap");
  await page.keyboard.press("ArrowDown");
  report.cell_info_keyboard = await page.textContent("#cell-info");
  await shot("attention");

  // Inside the model.
  await tab("inside");
  report.card = await page.textContent("#card");
  report.norm_rows = await page.$$eval("#norms tr.stage", (r) => r.length);
  await shot("inside");

  // Training: the chart follows the run as rows are appended.
  await tab("training");
  const points = () => page.$eval("#chart polyline.train", (p) => Number(p.dataset.points));
  report.train_points = await points();
  report.samples = await page.$$eval("#samples .sample", (s) => s.length);
  const rows = readFileSync(metrics, "utf8").trim().split("\n").map((l) => JSON.parse(l));
  const last = rows[rows.length - 1];
  appendFileSync(metrics, JSON.stringify({ step: last.step + 1, loss: last.loss * 0.98, lr: 0.001 }) + "\n");
  await page.waitForFunction((n) => Number(document.querySelector("#chart polyline.train").dataset.points) > n, report.train_points, { timeout: 10000 });
  report.train_points_after = await points();
  await shot("training");

  // The keyboard moves between tabs.
  await page.focus("#tab-training");
  await act(() => page.keyboard.press("ArrowLeft"));
  report.tab_after_arrow = await page.$eval("[role=tab][aria-selected=true]", (t) => t.id);

  // A narrow window (a laptop's split screen): nothing wider than the window.
  await page.setViewportSize({ width: 420, height: 900 });
  await tab("next");
  report.narrow_overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  // What sticks out, so that a failure names the element rather than only the width.
  report.narrow_wide = await page.evaluate(() => {
    const limit = document.documentElement.clientWidth;
    return [...document.querySelectorAll("body *")]
      .filter((e) => e.getClientRects().length && (e.getBoundingClientRect().right > limit + 0.5 ||
        (e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflowX === "visible")))
      .slice(0, 5)
      .map((e) => `${e.tagName.toLowerCase()}#${e.id}.${e.className} right ${Math.round(e.getBoundingClientRect().right)}: ${(e.textContent || "").slice(0, 60)}`);
  });
  await shot("narrow");

  // A text longer than the context: the server's message, shown on the page (the browser logs
  // the 400 as a failed resource, which is expected from here on).
  report.console_errors_before_bad_input = [...report.console_errors];
  await act(() => page.fill("#text", "word ".repeat(400)));
  report.error = await page.textContent("#status");
  report.error_class = await page.getAttribute("#status", "class");
} finally {
  await browser.close();
}
console.log(JSON.stringify(report));
