// lmforge ui: plain JavaScript, no libraries. Every number drawn comes from the server's JSON (lmforge.probe).
"use strict";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const state = { text: "", info: null, tokens: [], controller: null };

function visible(token) {
  return token.replace(/ /g, "\u2423").replace(/\n/g, "\u21b5").replace(/\t/g, "\u21e5");
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

async function api(path, body) {
  const response = await fetch(path, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
  return data;
}

function svgElement(name, attrs, text) {
  const el = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

function fillSelect(select, n, prefix) {
  const keep = select.value;
  select.replaceChildren();
  for (let i = 0; i < n; i++) select.append(new Option(`${prefix} ${i}`, String(i)));
  if (keep !== "" && Number(keep) < n) select.value = keep;
}

async function loadInfo() {
  const info = await (await fetch("/api/info")).json();
  state.info = info;
  $("model-name").textContent = info.model;
  $("model-shape").textContent = `${info.n_layer} layers \u00d7 ${info.n_head} heads \u00b7 ` +
    `${info.causal ? "causal LM" : "encoder"} \u00b7 up to ${info.max_tokens} tokens \u00b7 ${info.path || ""}`;
  fillSelect($("layer"), info.n_layer, "layer");
  fillSelect($("head"), info.n_head, "head");
  $("generation").hidden = !info.can_generate;
  $("candidates-title").firstChild.textContent = info.causal ? "Next token " : "Under the first [MASK] ";
}

function renderTokens(tokens, ids) {
  const box = $("tokens");
  box.replaceChildren();
  tokens.forEach((token, i) => {
    const span = document.createElement("span");
    span.className = `token c${i % 6}`;
    span.dataset.position = String(i);
    span.dataset.id = String(ids[i]);
    span.title = `position ${i}, id ${ids[i]}`;
    const piece = document.createElement("span");
    piece.className = "piece";
    piece.textContent = visible(token);
    const id = document.createElement("span");
    id.className = "id";
    id.textContent = String(ids[i]);
    span.append(piece, id);
    span.addEventListener("click", () => showLens(i));
    box.append(span);
  });
}

function renderCandidates(top) {
  const box = $("candidates");
  box.replaceChildren();
  if (!top) {
    box.textContent = state.info && state.info.causal ? "" : "No [MASK] in the text, or no masked-LM head.";
    return;
  }
  const best = top.length ? top[0].prob : 1;
  for (const c of top) {
    const row = document.createElement("button");
    row.className = "candidate";
    row.dataset.id = String(c.id);
    row.dataset.token = c.token;
    row.dataset.prob = String(c.prob);
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = JSON.stringify(c.token);
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = `${(100 * c.prob) / best}%`;
    const prob = document.createElement("span");
    prob.className = "prob";
    prob.textContent = `${(100 * c.prob).toFixed(2)}%`;
    row.append(label, bar, prob);
    if (state.info.causal) row.addEventListener("click", () => appendToken(c.token));
    box.append(row);
  }
}

function renderLens(lens, tokens) {
  const table = $("lens");
  table.replaceChildren();
  if (!lens) {
    $("lens-where").textContent = "(needs a language-model head)";
    return;
  }
  const position = lens.positions[0];
  $("lens-where").textContent = `at position ${position} (${JSON.stringify(tokens[position])}): top 3 per layer`;
  const head = table.insertRow();
  for (const h of ["read from", "1st", "p", "2nd", "3rd"]) head.append(Object.assign(document.createElement("th"),
    { textContent: h }));
  lens.tokens.forEach((layer, r) => {
    const row = table.insertRow();
    row.dataset.layer = String(r);
    row.insertCell().textContent = r === 0 ? "embeddings" : `after layer ${r - 1}`;
    const words = layer[0];
    const probs = lens.probs[r][0];
    Object.assign(row.insertCell(), { textContent: JSON.stringify(words[0]), className: "top" });
    Object.assign(row.insertCell(), { textContent: probs[0].toFixed(3), className: "p" });
    row.insertCell().textContent = JSON.stringify(words[1] ?? "");
    row.insertCell().textContent = JSON.stringify(words[2] ?? "");
  });
  document.querySelectorAll(".token").forEach((t) => t.classList.toggle("selected",
    Number(t.dataset.position) === position));
}

function renderAttention(data) {
  const tokens = data.tokens.map(visible);
  const w = data.weights;
  const n = tokens.length;
  // Head view: keys on the left, queries on the right, one line per (query, key) with opacity = weight.
  const rowH = 16, colW = 110, gap = 160;
  const head = $("headview");
  head.replaceChildren();
  head.setAttribute("width", String(2 * colW + gap));
  head.setAttribute("height", String(n * rowH + 8));
  head.dataset.layer = String(data.layer);
  head.dataset.head = String(data.head);
  tokens.forEach((t, i) => {
    head.append(svgElement("text", { x: colW - 4, y: i * rowH + 14, "text-anchor": "end" }, t));
    head.append(svgElement("text", { x: colW + gap + 4, y: i * rowH + 14 }, t));
  });
  for (let q = 0; q < n; q++) {
    for (let k = 0; k < n; k++) {
      if (w[q][k] < 0.01) continue;
      head.append(svgElement("line", {
        x1: colW + gap, y1: q * rowH + 10, x2: colW, y2: k * rowH + 10, stroke: "#2c5d99",
        "stroke-width": 2, "stroke-opacity": w[q][k].toFixed(4), "data-q": q, "data-k": k,
      }));
    }
  }
  // Heat map: row = query, column = key, darker = more attention.
  const cell = Math.max(4, Math.min(18, Math.floor(560 / n)));
  const label = 90;
  const map = $("heatmap");
  map.replaceChildren();
  map.setAttribute("width", String(label + n * cell + 4));
  map.setAttribute("height", String(label + n * cell + 4));
  map.dataset.layer = String(data.layer);
  map.dataset.head = String(data.head);
  for (let q = 0; q < n; q++) {
    if (cell >= 10) {
      map.append(svgElement("text", { x: label - 4, y: label + q * cell + cell - 3, "text-anchor": "end" }, tokens[q]));
      map.append(svgElement("text", { x: 0, y: 0, transform: `translate(${label + q * cell + cell - 3},${label - 4}) rotate(-90)` }, tokens[q]));
    }
    for (let k = 0; k < n; k++) {
      const rect = svgElement("rect", {
        x: label + k * cell, y: label + q * cell, width: cell, height: cell, fill: "#2c5d99",
        "fill-opacity": w[q][k].toFixed(4), "data-q": q, "data-k": k, "data-w": String(w[q][k]),
      });
      rect.append(svgElement("title", {}, `${tokens[q]} \u2192 ${tokens[k]}: ${w[q][k].toFixed(3)}`));
      map.append(rect);
    }
  }
}

async function analyze() {
  const text = $("text").value;
  $("status").textContent = "running\u2026";
  try {
    const t0 = performance.now();
    const data = await api("/api/analyze", { text, top_k: Number($("topk").value) || 10 });
    state.text = text;
    state.tokens = data.tokens;
    clearError();
    renderTokens(data.tokens, data.ids);
    renderCandidates(data.top);
    renderLens(data.lens, data.tokens);
    await fetchAttention();
    $("status").textContent = `${data.ids.length} tokens \u00b7 ${Math.round(performance.now() - t0)} ms`;
    document.body.dataset.analyzed = text;
  } catch (e) {
    $("status").textContent = "";
    showError(e.message);
  }
}

async function fetchAttention() {
  if (!state.text) return;
  try {
    const data = await api("/api/attention", {
      text: state.text, layer: Number($("layer").value), head: Number($("head").value),
    });
    clearError();
    renderAttention(data);
  } catch (e) {
    showError(e.message);
  }
}

async function showLens(position) {
  try {
    renderLens(await api("/api/lens", { text: state.text, position }), state.tokens);
  } catch (e) {
    showError(e.message);
  }
}

function appendToken(token) {
  $("text").value = state.text + token;
  analyze();
}

async function generate() {
  const params = new URLSearchParams({
    text: $("text").value, temperature: $("temperature").value, max_new_tokens: $("gen-max").value,
  });
  if (Number($("gen-topk").value) > 0) params.set("top_k", $("gen-topk").value);
  if (Number($("gen-topp").value) > 0) params.set("top_p", $("gen-topp").value);
  const out = $("generated");
  delete out.dataset.done;
  out.replaceChildren(Object.assign(document.createElement("span"), { className: "prompt", textContent: $("text").value }));
  const produced = document.createElement("span");
  produced.className = "new";
  out.append(produced);
  state.controller = new AbortController();
  $("generate").disabled = true;
  $("stop").disabled = false;
  try {
    const response = await fetch(`/api/generate?${params}`, { signal: state.controller.signal });
    if (!response.ok) {
      const data = await response.json().catch(() => ({}));
      throw new Error(data.error || `HTTP ${response.status}`);
    }
    clearError();
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        if (!event.startsWith("data: ")) continue;
        const msg = JSON.parse(event.slice(6));
        if (msg.text) produced.textContent += msg.text;
        if (msg.error) showError(msg.error);
        if (msg.done) out.dataset.done = "1";
      }
    }
  } catch (e) {
    if (e.name !== "AbortError") showError(e.message);
  } finally {
    $("generate").disabled = false;
    $("stop").disabled = true;
  }
}

$("analyze").addEventListener("click", analyze);
$("text").addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) analyze(); });
$("layer").addEventListener("change", fetchAttention);
$("head").addEventListener("change", fetchAttention);
$("generate").addEventListener("click", generate);
$("stop").addEventListener("click", () => state.controller && state.controller.abort());
loadInfo().catch((e) => showError(`cannot reach the lmforge server: ${e.message}`));
