// semsearch search page: plain JS, no dependencies, no network access beyond this server.
// All text from the server is inserted as text nodes (never as HTML).
"use strict";

const PAGE_SIZE = 10;
const state = { offset: 0, features: {} };
const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const c of children) node.append(c);
  return node;
}

// text with [start, end) ranges wrapped in <mark>
function highlighted(text, ranges) {
  const frag = document.createDocumentFragment();
  let pos = 0;
  for (const [a, b] of ranges || []) {
    if (a < pos) continue;
    frag.append(text.slice(pos, a), el("mark", {}, text.slice(a, b)));
    pos = b;
  }
  frag.append(text.slice(pos));
  return frag;
}

async function api(path, options = {}) {
  const resp = await fetch(path, options);
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    const err = body.error || {};
    throw new Error(`${resp.status} ${err.type || ""}: ${err.message || resp.statusText}`);
  }
  return body;
}

function showError(message) {
  $("error").textContent = message || "";
  $("error").hidden = !message;
}

function renderChannels(channels) {
  const box = el("div", { class: "channels" });
  for (const [name, c] of Object.entries(channels || {})) {
    box.append(el("span", { class: "ch", "data-channel": name, title: `raw ${name} score` },
      `${name} #${c.rank} (${c.score.toFixed(3)})`));
  }
  return box;
}

function renderTextHit(hit) {
  const title = el("h3", {}, highlighted(hit.title || hit.id, hit.title ? hit.title_highlights : []),
    el("span", { class: "id" }, hit.id));
  const li = el("li", { class: "hit", "data-id": hit.id }, title);
  if (hit.snippet) {
    const s = hit.snippet;
    li.append(el("p", { class: "snippet" }, s.truncated_start ? "… " : "",
      highlighted(s.text, s.highlights), s.truncated_end ? " …" : ""));
  }
  li.append(el("div", { class: "muted" }, `score ${hit.score.toFixed(4)}`));
  if (hit.channels) li.append(renderChannels(hit.channels));
  if (hit.duplicates && hit.duplicates.length) {
    li.append(el("div", { class: "dups" }, `near-duplicates collapsed: ${hit.duplicates.join(", ")}`));
  }
  return li;
}

// Image hits (documents with an image) go to a grid. The image bytes come from this server
// only (GET /v1/images/{id}, indexed documents only); the caption is the title.
function renderImageHit(hit) {
  const fig = el("figure", { class: "image-hit", "data-id": hit.id });
  if (hit.image_url) fig.append(el("img", { src: hit.image_url, alt: hit.title || hit.id, loading: "lazy" }));
  fig.append(el("figcaption", {}, `${hit.title || hit.id}`));
  for (const [name, d] of Object.entries(hit.hamming || {})) {
    const rule = (hit.rule || {})[name];
    fig.append(el("div", { class: "muted hamming", "data-channel": name },
      `${name} Hamming ${d}${rule === "mirrored" ? " (mirrored)" : ""}`));
  }
  if (hit.channels) fig.append(renderChannels(hit.channels));
  return fig;
}

function clearResults() {
  $("results").replaceChildren();
  $("image-results").replaceChildren();
  $("image-results").hidden = true;
  $("duplicate-groups").hidden = true;
  $("pager").hidden = true;
}

async function searchByImage() {
  const file = $("image-file").files[0];
  if (!file) return;
  const form = new FormData();
  form.append("file", file);
  form.append("k", String(PAGE_SIZE));
  if ($("image-channels").value) form.append("channels", $("image-channels").value);
  showError("");
  clearResults();
  $("status").textContent = "searching by image…";
  try {
    const data = await api("/v1/search/image", { method: "POST", body: form });
    for (const hit of data.hits) $("image-results").append(renderImageHit(hit));
    $("image-results").hidden = data.hits.length === 0;
    $("status").textContent = data.hits.length
      ? `similar to ${data.filename} (${data.width}×${data.height}, ${data.channels.join(" + ")}): ` +
        `${data.hits.length} images (${data.took_ms.toFixed(0)} ms)`
      : `no images similar to ${data.filename}`;
  } catch (e) {
    $("status").textContent = "";
    showError(e.message);
  }
}

async function showDuplicates() {
  showError("");
  clearResults();
  const body = { max_distance: Number($("dup-distance").value || 10) };
  try {
    // a background job (202 + status URL): poll it until it is done
    $("status").textContent = "finding near-duplicates…";
    const job = await api("/v1/duplicates", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    let state = job;
    while (state.status !== "done") {
      if (state.status === "failed") throw new Error(`${state.error.type}: ${state.error.message}`);
      await new Promise((r) => setTimeout(r, 250));
      state = await api(job.status_url);
    }
    const data = state.result;
    const list = $("duplicate-groups").querySelector("ol");
    list.replaceChildren();
    for (const group of data.groups) {
      const row = el("li", { class: "dup-group grid" });
      for (const id of group) {
        row.append(el("figure", { class: "image-hit", "data-id": id },
          el("img", { src: "/v1/images/" + id.split("/").map(encodeURIComponent).join("/"), alt: id, loading: "lazy" }),
          el("figcaption", {}, id)));
      }
      list.append(row);
    }
    $("duplicate-groups").hidden = false;
    $("status").textContent = `${data.groups.length} near-duplicate groups among ${data.images} images ` +
      `(pHash distance ≤ ${data.max_distance}, ${data.pairs.length} pairs)`;
  } catch (e) {
    showError(e.message);
  }
}

function renderHits(data) {
  const list = $("results"), grid = $("image-results");
  list.replaceChildren();
  grid.replaceChildren();
  for (const hit of data.hits) {
    (hit.image ? grid : list).append(hit.image ? renderImageHit(hit) : renderTextHit(hit));
  }
  grid.hidden = grid.children.length === 0;
  const n = data.hits.length;
  $("status").textContent = n
    ? `${data.mode}: hits ${data.offset + 1}–${data.offset + n} (${data.took_ms.toFixed(0)} ms)` +
      (data.degraded ? ` — degraded, failed: ${Object.keys(data.failed_channels).join(", ")}` : "")
    : `no hits for “${data.query}”`;
  $("pager").hidden = n === 0 && data.offset === 0;
  $("prev").disabled = data.offset === 0;
  $("next").disabled = n < data.k;
  $("page").textContent = `page ${Math.floor(data.offset / data.k) + 1}`;
}

async function search() {
  const query = $("q").value.trim();
  if (!query) return;
  const body = { query, mode: $("mode").value, k: PAGE_SIZE, offset: state.offset,
                 collapse: $("collapse").checked, explain: true };
  if ($("fusion").value) body.fusion = $("fusion").value;
  if (state.features.rerank && $("rerank").checked) body.rerank = true;
  showError("");
  $("duplicate-groups").hidden = true;
  $("status").textContent = "searching…";
  try {
    renderHits(await api("/v1/search", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    }));
  } catch (e) {
    $("status").textContent = "";
    $("results").replaceChildren();
    showError(e.message);
  }
}

async function loadStats() {
  try {
    const s = await api("/v1/stats");
    state.features = s.features || {};
    $("index-info").textContent = `${s.documents} documents · ${s.models.text_encoder || ""}`;
    $("rerank-label").hidden = !state.features.rerank;
    $("image-form").hidden = !state.features.image_search;
    $("mode-image").hidden = $("mode-image").disabled = !state.features.image_text;
    $("dup-button").hidden = $("dup-distance-label").hidden =
      !state.features.duplicates || state.features.duplicates_need_key;
  } catch (e) {
    showError(e.message);
  }
}

$("search-form").addEventListener("submit", (ev) => { ev.preventDefault(); state.offset = 0; search(); });
$("image-form").addEventListener("submit", (ev) => { ev.preventDefault(); searchByImage(); });
$("dup-button").addEventListener("click", showDuplicates);
$("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE_SIZE); search(); });
$("next").addEventListener("click", () => { state.offset += PAGE_SIZE; search(); });
loadStats();
