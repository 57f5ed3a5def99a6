// The lab page: it only draws. Tokenizing, the forward pass, the sampler's cuts and every draw
// happen in minillm (the /lab/api/* endpoints and the server's /v1/completions stream).
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  model: null,        // the model card (/lab/api/model)
  ids: null,          // token ids when the text came from "step" (exact), null when typed
  tokens: [],         // the tokens of the last inspection
  view: "tokens",
  runRows: -1,        // rows drawn in the training chart
  generating: null,   // AbortController of a running "generate"
  cursor: null,       // [i, j] of the attention cell shown
  apiKey: sessionStorage.getItem("minillm-key"),
};

// ---- talking to the server ----

// JSON in and out, with the API key once the server asked for one.
function headers() {
  const h = { "content-type": "application/json" };
  if (state.apiKey) h.authorization = "Bearer " + state.apiKey;
  return h;
}

async function api(path, body) {
  const init = body === undefined ? {} : { method: "POST", body: JSON.stringify(body) };
  const resp = await fetch(path, { ...init, headers: headers() });
  if (resp.status === 401 && !state.askedKey) {
    state.askedKey = true;
    const key = prompt("This server needs its API key:");
    if (key) {
      state.apiKey = key;
      sessionStorage.setItem("minillm-key", key);
      return api(path, body);
    }
  }
  const data = await resp.json().catch(() => ({ error: { message: `HTTP ${resp.status}` } }));
  if (!resp.ok) throw new Error(data.error ? data.error.message : `HTTP ${resp.status}`);
  return data;
}

function status(message, isError) {
  $("status").textContent = message || "";
  $("status").className = isError ? "error" : "";
  $("status").setAttribute("role", isError ? "alert" : "status");
}

// What the model should look at: exact ids after "step", else the typed text.
function subject() {
  return state.ids ? { ids: state.ids } : { text: $("text").value };
}

function samplerSettings() {
  return {
    temperature: Number($("temperature").value),
    top_k: Number($("top_k").value),
    top_p: Number($("top_p").value),
    min_p: Number($("min_p").value),
  };
}

// ---- small drawing helpers ----

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v);
  }
  e.append(...children);
  return e;
}

function svg(tag, attrs) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}

// Whitespace made visible, as the CLI shows it.
function visible(text) {
  return text.replace(/ /g, "␣").replace(/\n/g, "↵").replace(/\t/g, "⇥");
}

function tokenColour(id) {
  return `hsl(${(id * 47) % 360} 70% 88%)`;
}

const pct = (p) => (p >= 0.0995 ? (100 * p).toFixed(1) : (100 * p).toPrecision(2)) + "%";

// ---- views ----

async function showTokens() {
  const data = await api("/lab/api/tokens", { text: $("text").value });
  const box = $("tokenizers");
  box.replaceChildren();
  for (const t of data.tokenizers) {
    const pieces = el("div", { class: "pieces" });
    for (const tok of t.tokens) {
      const span = el("span", {
        class: "token" + (tok.unknown ? " unknown" : ""),
        title: `id ${tok.id}, ${tok.bytes} byte(s)${tok.unknown ? ": not in the vocabulary" : ""}`,
        "data-id": tok.id,
        text: tok.unknown ? "<unk>" : visible(tok.text),
      });
      span.style.background = tokenColour(tok.id);
      pieces.append(span);
    }
    const perToken = t.count ? (data.bytes / t.count).toFixed(2) : "-";
    const unknown = t.tokens.filter((x) => x.unknown).length;
    const ids = el("div", { class: "ids", text: "ids: " + t.tokens.map((x) => x.id).join(" ") });
    const head = el("h3", { text: t.name === "BPE" ? "BPE " : `${t.name}-level ` },
      el("span", { class: "stats", text: `(vocabulary ${t.vocab_size.toLocaleString()}, fitted to ${t.fitted}): ` +
        `${t.count} tokens, ${perToken} bytes per token` + (unknown ? `, ${unknown} unknown` : "") }));
    box.append(el("div", { class: "tokenizer", id: "tok-" + t.name.toLowerCase(), "data-count": t.count }, head, pieces, ids));
  }
}

async function showNext(seed) {
  const data = await api("/lab/api/inspect", { ...subject(), ...samplerSettings(), top: 20, seed });
  state.tokens = data.tokens;
  const bars = $("bars");
  bars.replaceChildren(
    el("span", { class: "bars-head", text: "token" }), el("span", { class: "bars-head", text: "probability" }),
    el("span", { class: "bars-head num", text: "model" }), el("span", { class: "bars-head num", text: "sampler" }));
  const top = Math.max(...data.next.map((n) => Math.max(n.prob, n.shaped)), 1e-9);
  for (const n of data.next) {
    const track = el("span", { class: "track" }, el("span", { class: "raw" }), el("span", { class: "shaped" }));
    track.children[0].style.width = (100 * n.prob / top) + "%";
    track.children[1].style.width = (100 * n.shaped / top) + "%";
    const row = el("div", {
      class: "bar" + (n.shaped === 0 ? " dropped" : "") + (data.sampled && data.sampled.id === n.id ? " picked" : ""),
      role: "listitem", "data-id": n.id, "data-prob": n.prob, "data-shaped": n.shaped,
    }, el("span", { class: "label", title: `id ${n.id}`, text: `"${visible(n.text)}"` }), track,
      el("span", { class: "num", text: pct(n.prob) }), el("span", { class: "num after", text: n.shaped === 0 ? "dropped" : pct(n.shaped) }));
    bars.append(row);
  }
  $("kept").textContent = `${data.tokens.length} tokens in; the sampler can pick from ${data.kept.toLocaleString()} ` +
    `of ${state.model.vocab_size.toLocaleString()} tokens at these settings (the top 20 are shown).`;
  return data;
}

async function sampleOne(append) {
  const seed = Math.floor(Math.random() * 2 ** 31);
  const data = await showNext(seed);
  const s = data.sampled;
  $("sampled").textContent = `sampled "${visible(s.text)}" (id ${s.id}, probability ${pct(s.shaped)} under these settings)`;
  if (!append) return;
  state.ids = data.tokens.map((t) => t.id).concat([s.id]);
  if (state.ids.length > state.model.config.block_size) {
    state.ids = null;
    status(`the text has reached the model's context (${state.model.config.block_size} tokens)`, true);
    return;
  }
  $("text").value = data.tokens.map((t) => t.text).join("") + s.text;
  await showNext();
}

async function generate() {
  const controller = new AbortController();
  state.generating = controller;
  $("generate").disabled = true;
  $("stop").disabled = false;
  const out = $("generated");
  const prompt = $("text").value;
  out.replaceChildren(el("span", { class: "prompt", text: prompt }));
  const body = { model: state.model.name, prompt, max_tokens: 80, stream: true, ...samplerSettings() };
  try {
    const resp = await fetch("/v1/completions", { method: "POST", headers: headers(), body: JSON.stringify(body), signal: controller.signal });
    if (!resp.ok) throw new Error((await resp.json()).error.message);
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buffered = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffered += decoder.decode(value, { stream: true });
      const events = buffered.split("\n\n");
      buffered = events.pop();
      for (const event of events) {
        const line = event.split("\n").find((l) => l.startsWith("data: "));
        if (!line || line === "data: [DONE]") continue;
        const chunk = JSON.parse(line.slice(6));
        if (chunk.choices && chunk.choices[0]) out.append(chunk.choices[0].text);
      }
    }
  } catch (e) {
    if (e.name !== "AbortError") status(e.message, true);
  } finally {
    state.generating = null;
    $("generate").disabled = false;
    $("stop").disabled = true;
  }
}

async function showAttention() {
  const layer = Number($("layer").value);
  const head = $("head").value === "" ? null : Number($("head").value);
  const data = await api("/lab/api/inspect", { ...subject(), top: 1, layer, head });
  state.tokens = data.tokens;
  drawHeatmap(data.attention.weights, data.tokens.map((t) => visible(t.text)));
}

const MAX_SHOWN = 64;

function drawHeatmap(weights, labels) {
  const n = weights.length;
  const from = Math.max(0, n - MAX_SHOWN); // long texts: the last tokens, whose rows are fullest
  const shown = n - from;
  const cell = shown > 32 ? 12 : shown > 16 ? 22 : 34;
  const margin = 90;
  const size = margin + shown * cell;
  const root = svg("svg", { width: size, height: size, viewBox: `0 0 ${size} ${size}`, role: "img",
    "aria-label": `attention weights, ${shown} by ${shown}` });
  for (let i = from; i < n; i++) {
    const k = i - from;
    const y = margin + k * cell;
    const left = svg("text", { x: margin - 4, y: y + cell * 0.7, "text-anchor": "end" });
    left.textContent = labels[i].slice(0, 10);
    const top = svg("text", { transform: `translate(${margin + k * cell + cell * 0.7}, ${margin - 4}) rotate(-60)` });
    top.textContent = labels[i].slice(0, 10);
    root.append(left, top);
    for (let j = from; j < n; j++) {
      const w = weights[i][j];
      const masked = j > i;
      const rect = svg("rect", {
        class: "cell" + (masked ? " masked" : ""), x: margin + (j - from) * cell, y, width: cell - 1, height: cell - 1,
        "data-i": i, "data-j": j, "data-w": w,
      });
      if (!masked) rect.setAttribute("fill", `rgba(37, 99, 235, ${Math.min(1, 0.04 + w)})`);
      const title = svg("title");
      title.textContent = masked ? `masked: "${labels[i]}" cannot see "${labels[j]}", which comes after it`
        : `"${labels[i]}" → "${labels[j]}": ${w.toFixed(3)}`;
      rect.append(title);
      root.append(rect);
    }
  }
  root.addEventListener("mouseover", (e) => {
    if (e.target.classList.contains("cell")) pointAt(Number(e.target.dataset.i), Number(e.target.dataset.j));
  });
  $("heatmap").replaceChildren(root);
  $("heatmap").dataset.tokens = n;
  $("cell-info").textContent = from > 0 ? `The text has ${n} tokens; the map shows the last ${shown}.` : "";
  state.cursor = null;
}

function pointAt(i, j) {
  const map = $("heatmap");
  map.querySelectorAll(".cursor").forEach((c) => c.classList.remove("cursor"));
  const rect = map.querySelector(`.cell[data-i="${i}"][data-j="${j}"]`);
  if (!rect) return;
  rect.classList.add("cursor");
  state.cursor = [i, j];
  $("cell-info").textContent = rect.querySelector("title").textContent + ` (row ${i}, column ${j})`;
}

$("heatmap").addEventListener("keydown", (e) => {
  const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
  if (!moves[e.key]) return;
  e.preventDefault();
  const n = Number($("heatmap").dataset.tokens || 0);
  const from = Math.max(0, n - MAX_SHOWN);
  const [i, j] = state.cursor || [n - 1, n - 1];
  const clamp = (x) => Math.max(from, Math.min(n - 1, x));
  pointAt(clamp(i + moves[e.key][0]), clamp(j + moves[e.key][1]));
});

async function showInside() {
  const m = state.model;
  const c = m.config;
  const mb = (b) => (b >= 1e9 ? (b / 1e9).toFixed(2) + " GB" : b >= 1e6 ? (b / 1e6).toFixed(2) + " MB" : (b / 1e3).toFixed(1) + " kB");
  const rows = [
    ["model", m.name], ["loaded from", m.source],
    ["architecture", m.architecture],
    ["layers × heads", `${c.n_layer} × ${c.n_head} (head size ${m.head_size}` +
      (m.n_kv_head < c.n_head ? `; ${m.n_kv_head} KV heads, each shared by ${c.n_head / m.n_kv_head} query heads)` : ")")],
    ["width (n_embd)", c.n_embd], ["context", c.block_size], ["vocabulary", c.vocab_size.toLocaleString()],
    ["parameters", m.params.toLocaleString()], ["weights stored as", m.weights],
    [m.architecture === "gpt2" ? "  embeddings (token + position)" : "  embeddings (token" +
      (c.arch.Llama.tied_head ? "; rotary positions have none)" : " + output layer; rotary positions have none)"),
      m.params_embeddings.toLocaleString()],
    ["  per block", m.params_per_block.toLocaleString()],
    ...m.memory.map((x) => [`weights at ${x.type} (${x.bits} bits)`, mb(x.bytes)]),
    ["to generate (one sequence, full context)", mb(m.generating.total)],
    ["  weights as stored", mb(m.generating.weights)],
    ["  KV cache", mb(m.generating.kv_cache) + (m.n_kv_head < c.n_head
      ? ` (${c.n_head / m.n_kv_head}x smaller than with a KV head per query head)` : "")],
    ["  working buffers", mb(m.generating.working)],
    ["chat template", m.chat.template],
  ];
  $("card").replaceChildren(el("table", { id: "card-table" },
    ...rows.map(([k, v]) => el("tr", {}, el("th", { scope: "row", text: k }), el("td", { text: String(v) })))),
    el("p", { text: "A system message and a question, as the template renders them for the model to answer:" }),
    el("pre", { id: "chat-example", text: m.chat.example }));
  const data = await api("/lab/api/inspect", { ...subject(), top: 1 });
  state.tokens = data.tokens;
  const head = el("tr", {}, el("th", { text: "stage" }), ...data.tokens.map((t) => el("th", { text: visible(t.text) })));
  const body = data.residual_norms.map((norms, s) => {
    const max = Math.max(...norms);
    return el("tr", { class: "stage" }, el("th", { scope: "row", text: s === 0 ? "embedding" : `after block ${s}` }),
      ...norms.map((x) => {
        const td = el("td", { class: "norm", text: x.toFixed(2) });
        td.style.background = `rgba(37, 99, 235, ${0.08 + 0.4 * x / max})`;
        return td;
      }));
  });
  $("norms").replaceChildren(el("table", {}, head, ...body));
}

async function showTraining() {
  let data;
  try {
    data = await api("/lab/api/run");
  } catch (e) {
    $("chart").replaceChildren(el("p", { text: e.message }));
    return;
  }
  if (data.rows.length === state.runRows) return;
  state.runRows = data.rows.length;
  drawChart(data.rows);
  const samples = data.rows.filter((r) => r.sample).reverse();
  $("samples").replaceChildren(el("h2", { text: `Samples (${samples.length}), latest first` }),
    ...samples.map((r) => el("div", { class: "sample" }, el("strong", { text: `step ${r.step}` }), el("pre", { text: r.sample.trim() }))));
}

function drawChart(rows) {
  const W = 720, H = 300, L = 50, B = 30, T = 10, R = 40;
  const train = rows.filter((r) => typeof r.loss === "number").map((r) => [r.step, r.loss]);
  const val = rows.filter((r) => typeof r.val_loss === "number").map((r) => [r.step, r.val_loss]);
  const all = train.concat(val);
  const root = svg("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "loss curves" });
  if (all.length === 0) {
    $("chart").replaceChildren(el("p", { text: "no steps logged yet" }));
    return;
  }
  const maxX = Math.max(...all.map((p) => p[0]), 1);
  const lo = Math.min(...all.map((p) => p[1])), hi = Math.max(...all.map((p) => p[1]));
  const span = hi - lo || 1;
  const x = (s) => L + (W - L - R) * s / maxX;
  const y = (v) => T + (H - T - B) * (1 - (v - lo) / span);
  for (let k = 0; k <= 4; k++) {
    const v = lo + span * k / 4;
    const t = svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" });
    t.textContent = v.toFixed(2);
    root.append(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#e5e8ee" }), t);
  }
  // Step ticks at round numbers: 1, 2 or 5 times a power of ten, about four of them.
  const raw = maxX / 4, power = 10 ** Math.floor(Math.log10(raw));
  const every = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
  for (let s = 0; s <= maxX; s += every) {
    const u = svg("text", { x: x(s), y: H - 10, "text-anchor": "middle" });
    u.textContent = String(s);
    root.append(u);
  }
  const unit = svg("text", { x: W - R, y: H - 10, "text-anchor": "end" });
  unit.textContent = "step";
  root.append(unit);
  const line = (points, colour, cls) => svg("polyline", { class: cls, fill: "none", stroke: colour, "stroke-width": 1.8,
    points: points.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" "), "data-points": points.length });
  root.append(line(train, "#9aa6ba", "train"), line(val, "#2563eb", "val"));
  for (const p of val) root.append(svg("circle", { cx: x(p[0]), cy: y(p[1]), r: 3, fill: "#2563eb" }));
  const legend = svg("text", { x: W - R, y: T + 12, "text-anchor": "end" });
  legend.textContent = `train loss (grey, ${train.length} steps), held-out loss (blue, ${val.length} evaluations)`;
  root.append(legend);
  $("chart").replaceChildren(root);
}

// ---- wiring ----

const views = {
  tokens: showTokens,
  next: () => showNext(),
  attention: showAttention,
  inside: showInside,
  training: showTraining,
};

// Runs one update of the page; only the latest one reports (an older answer arriving late is
// not shown as current). body[data-settled] counts the updates that finished as the latest:
// the browser test waits on it.
let pending = 0;
let settled = 0;
async function run(task) {
  const ticket = ++pending;
  try {
    await task();
    if (ticket === pending) status("");
  } catch (e) {
    if (ticket === pending) status(e.message, true);
  }
  if (ticket === pending) document.body.dataset.settled = ++settled;
}

const refresh = () => run(views[state.view]);

function debounce(f, ms) {
  let timer;
  return () => { clearTimeout(timer); timer = setTimeout(f, ms); };
}

function select(view) {
  state.view = view;
  for (const tab of document.querySelectorAll("[role=tab]")) {
    const on = tab.id === "tab-" + view;
    tab.setAttribute("aria-selected", on);
    tab.tabIndex = on ? 0 : -1;
    $(tab.getAttribute("aria-controls")).hidden = !on;
  }
  state.runRows = -1;
  refresh();
}

const tabs = [...document.querySelectorAll("[role=tab]")];
tabs.forEach((tab, k) => {
  tab.addEventListener("click", () => select(tab.id.slice(4)));
  tab.addEventListener("keydown", (e) => {
    const step = { ArrowRight: 1, ArrowLeft: -1 }[e.key];
    if (!step) return;
    const next = tabs[(k + step + tabs.length) % tabs.length];
    next.focus();
    select(next.id.slice(4));
  });
});

$("text").addEventListener("input", debounce(() => {
  state.ids = null;
  $("sampled").textContent = "";
  refresh();
}, 200));
for (const id of ["temperature", "top_k", "top_p", "min_p"]) {
  const show = () => {
    const v = Number($(id).value);
    $(id + "-value").textContent = id === "top_k" ? (v === 0 ? "all" : String(v)) : v.toFixed(2);
  };
  $(id).addEventListener("input", () => { show(); refreshSoon(); });
  show();
}
const refreshSoon = debounce(refresh, 60);
$("sample").addEventListener("click", () => run(() => sampleOne(false)));
$("step").addEventListener("click", () => run(() => sampleOne(true)));
$("generate").addEventListener("click", generate);
$("stop").addEventListener("click", () => state.generating && state.generating.abort());
$("layer").addEventListener("change", refresh);
$("head").addEventListener("change", refresh);
setInterval(() => { if (state.view === "training" && !document.hidden) showTraining(); }, 2000);

(async function start() {
  try {
    state.model = await api("/lab/api/model");
  } catch (e) {
    status("cannot reach the model: " + e.message, true);
    return;
  }
  const c = state.model.config;
  $("model-line").textContent = `${state.model.source}: ${state.model.params.toLocaleString()} parameters, ` +
    `${c.n_layer} layers, ${c.n_head} heads, width ${c.n_embd}, context ${c.block_size}`;
  $("layer").replaceChildren(...Array.from({ length: c.n_layer }, (_, l) => el("option", { value: l, text: String(l) })));
  $("head").replaceChildren(el("option", { value: "", text: "mean of all heads" }),
    ...Array.from({ length: c.n_head }, (_, h) => el("option", { value: h, text: String(h) })));
  if (!state.model.run) $("tab-training").title = "start the lab with --run RUN_DIR to see a run";
  refresh();
})();
