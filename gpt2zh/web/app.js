// gpt2zh writing studio: the chapter, its parts written by the model, and the controls.
// Everything is kept in localStorage, so a reload loses nothing.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY = "gpt2zh-studio";
const FIELDS = ["length", "temperature", "top_k", "top_p", "repetition_penalty", "dry_multiplier", "repetition", "seed"];
let state = { opening: "", chapter: "", memory: "", note: "", settings: {}, parts: [] };
let defaults = null;
let controller = null;      // the running request's AbortController
let model = null;
const API_KEY = "gpt2zh-api-key";   // kept apart from the chapter: clearing one never clears the other

// -- the API, with the server's key when it asks for one (401): asked once, then kept

function apiHeaders(extra) {
  const key = localStorage.getItem(API_KEY);
  return Object.assign({}, extra || {}, key ? { Authorization: "Bearer " + key } : {});
}

function askForKey(message) {
  $("key-message").textContent = message || "This server needs its API key.";
  $("key-form").hidden = false;
  $("api-key").focus();
  return new Promise((resolve) => {
    $("key-form").onsubmit = (e) => {
      e.preventDefault();
      localStorage.setItem(API_KEY, $("api-key").value.trim());
      $("api-key").value = "";
      $("key-form").hidden = true;
      resolve();
    };
  });
}

// fetch() for /v1: on a 401 the page asks for the key and tries again with it
async function api(path, options) {
  for (;;) {
    const resp = await fetch(path, Object.assign({}, options, { headers: apiHeaders((options || {}).headers) }));
    if (resp.status !== 401) return resp;
    const err = await resp.json().catch(() => ({}));
    setStatus("this server needs an API key");
    await askForKey(localStorage.getItem(API_KEY) ? "That key was not accepted: " + ((err.error || {}).message || "")
                                                  : "This server needs its API key (ask whoever runs it).");
  }
}

function load() {
  try { Object.assign(state, JSON.parse(localStorage.getItem(KEY) || "{}")); } catch (e) { /* a fresh start */ }
  $("opening").value = state.opening || "";
  $("memory").value = state.memory || "";
  $("note").value = state.note || "";
}
function persist() { localStorage.setItem(KEY, JSON.stringify(state)); }

function setStatus(text, busy) {
  $("status").textContent = text;
  $("status").classList.toggle("busy", !!busy);
}

function setBusy(busy) {
  for (const id of ["write", "continue", "undo", "regenerate", "edit"]) $(id).disabled = busy;
  $("stop").disabled = !busy;
}

// -- rendering: paragraphs, repeated passages, rollback marks

function escapeHtml(s) {
  return s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
}

// what a span of the chapter is marked as: a repeated passage, a collapse or a fixation
const MARKS = { repeat: "repeated passage", collapse: "collapsed onto one character", fixation: "fixated on one word" };

function render() {
  const text = state.chapter;
  const marks = [], rollbacks = new Set();
  for (const p of state.parts) {
    for (const [a, b] of p.repeats || []) marks.push([p.start + a, p.start + b, "repeat"]);
    for (const [a, b, kind] of p.flagged || []) marks.push([p.start + a, p.start + b, kind]);
    for (const r of p.rollbacks || []) rollbacks.add(p.start + r);
  }
  const markAt = (i) => {
    let best = null;   // a repeat shows over a fixation, a collapse over both
    for (const [a, b, kind] of marks) {
      if (i >= a && i < b && (best === null || kind === "collapse" || (kind === "repeat" && best === "fixation"))) best = kind;
    }
    return best;
  };
  const writing = controller && state.parts.length ? state.parts[state.parts.length - 1].start : -1;
  let html = "", mark = null, inWriting = false, para = "";
  const open = (kind) => `<mark class="${kind}" title="${MARKS[kind]}">`;
  const flush = () => { html += "<p>" + para + (mark ? "</mark>" : "") + (inWriting ? "</span>" : "") + "</p>";
                        para = (inWriting ? '<span class="writing">' : "") + (mark ? open(mark) : ""); };
  for (let i = 0; i <= text.length; i++) {
    if (i === writing) { para += '<span class="writing">'; inWriting = true; }
    if (rollbacks.has(i)) para += '<span class="rollback" title="rewritten by the repetition detector">↺</span>';
    const here = i < text.length ? markAt(i) : null;
    if (here !== mark) {
      if (mark) para += "</mark>";
      if (here) para += open(here);
      mark = here;
    }
    if (i === text.length) break;
    const c = text[i];
    if (c === "\n") flush(); else para += escapeHtml(c);
  }
  if (mark) para += "</mark>";
  if (inWriting) para += "</span>";
  html += "<p>" + para + "</p>";
  const box = $("chapter");
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  box.innerHTML = text ? html : "";
  if (atBottom) box.scrollTop = box.scrollHeight;
}

function showReport(ext) {
  const list = $("report-list");
  if (!ext || !ext.report) { list.innerHTML = "<dt>—</dt><dd></dd>"; return; }
  const r = ext.report;
  const rows = [["characters", r.chars], ["8-gram repetition", r.rep_8gram], ["4-gram repetition", r.rep_4gram],
                ["distinct-2", r.distinct_2], ["longest repeat", r.longest_repeat + " chars"],
                ["detector fired", r.detector_fired], ["rolled back", r.rolled_back]];
  const w = (ext.measures && ext.measures.windows) || {};
  for (const [key, label] of [["collapse", "collapse"], ["fixation", "fixation"], ["guard", "reference perplexity"]]) {
    if (w[key] && w[key].band) rows.push([label + " outside the human band", `${w[key].out} of ${w[key].values.length} windows`]);
  }
  rows.push(["status", ext.status], ["tokens/s", ext.tokens_per_s]);
  list.innerHTML = rows.map(([k, v]) => `<dt>${k}</dt><dd>${escapeHtml(String(v))}</dd>`).join("");
}

// -- settings

function settings() {
  const s = {};
  for (const f of FIELDS) {
    const v = $(f).value;
    if (v === "") continue;
    s[f] = f === "repetition" ? v : Number(v);
  }
  return s;
}

function applyDefaults(d) {
  defaults = d;
  for (const f of FIELDS) {
    const el = $(f);
    const dv = d.sampling[f];
    if (dv !== undefined) { el.placeholder = String(dv); if (f === "repetition") el.value = dv; }
    const saved = (state.settings || {})[f];
    el.value = saved !== undefined ? saved : (dv !== undefined ? dv : "");
  }
}

// -- writing

async function write(prompt, start) {
  if (controller) return;
  const s = settings();
  const body = { prompt, stream: true, model, memory: $("memory").value, authors_note: $("note").value,
                 length: s.length || 800, temperature: s.temperature, top_k: s.top_k, top_p: s.top_p,
                 repetition_penalty: s.repetition_penalty, dry_multiplier: s.dry_multiplier,
                 repetition: s.repetition };
  if (s.seed !== undefined) body.seed = s.seed;
  const part = { start, repeats: [], rollbacks: [] };
  state.parts.push(part);
  controller = new AbortController();
  setBusy(true);
  setStatus("writing…", true);
  render();
  let written = 0;
  try {
    const resp = await api("/v1/completions", { method: "POST", headers: { "Content-Type": "application/json" },
                                                body: JSON.stringify(body), signal: controller.signal });
    if (!resp.ok) {
      const err = await resp.json().catch(() => ({}));
      throw new Error((err.error && err.error.message) || resp.statusText);
    }
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const line = buf.slice(0, cut).trim();
        buf = buf.slice(cut + 2);
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") continue;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message);
        for (const c of chunk.choices || []) {
          if (c.text) { state.chapter += c.text; written += c.text.length; }
        }
        if (chunk.gpt2zh && chunk.gpt2zh.report) {
          part.repeats = chunk.gpt2zh.repeated_spans || [];
          part.flagged = chunk.gpt2zh.flagged_spans || [];
          part.rollbacks = chunk.gpt2zh.rollbacks_at || [];
          showReport(chunk.gpt2zh);
        }
        persist();
        render();
      }
    }
    setStatus(`wrote ${written} characters`);
  } catch (e) {
    if (e.name === "AbortError") setStatus(`stopped after ${written} characters`);
    else setStatus("error: " + e.message);
  } finally {
    controller = null;
    if (!written) state.parts.pop();
    setBusy(false);
    persist();
    render();
  }
}

function stop() { if (controller) controller.abort(); }

function writeFromOpening() {
  state.opening = $("opening").value;
  if (!state.opening.trim()) { setStatus("write an opening first"); $("opening").focus(); return; }
  state.chapter = state.opening;
  state.parts = [];
  write(state.chapter, state.chapter.length);
}

function continueChapter() {
  if (!state.chapter) return writeFromOpening();
  write(state.chapter, state.chapter.length);
}

function undoParagraph() {
  const text = state.chapter.replace(/\n+$/, "");
  const cut = text.lastIndexOf("\n");
  state.chapter = cut >= 0 ? text.slice(0, cut + 1) : "";
  state.parts = state.parts.filter((p) => p.start < state.chapter.length);
  persist();
  render();
  setStatus("undid the last paragraph");
}

function regenerate() {
  const last = state.parts[state.parts.length - 1];
  if (!last) return continueChapter();
  state.chapter = state.chapter.slice(0, last.start);
  state.parts.pop();
  render();
  write(state.chapter, state.chapter.length);
}

function toggleEdit() {
  const edit = $("chapter-edit"), view = $("chapter");
  if (edit.hidden) {
    edit.value = state.chapter; edit.hidden = false; view.hidden = true; edit.focus();
    $("edit").textContent = "完 Done";
  } else {
    if (edit.value !== state.chapter) { state.chapter = edit.value; state.parts = []; }
    edit.hidden = true; view.hidden = false; $("edit").textContent = "改 Edit";
    persist(); render();
  }
}

function save() {
  const blob = new Blob([state.chapter + "\n"], { type: "text/plain;charset=utf-8" });
  const a = document.createElement("a");
  const title = (state.chapter.split("\n")[0] || "chapter").slice(0, 20).replace(/[\\/:*?"<>|\s]+/g, "_");
  a.href = URL.createObjectURL(blob);
  a.download = `${title || "chapter"}.txt`;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setStatus("saved " + a.download);
}

// -- wiring

$("write").onclick = writeFromOpening;
$("stop").onclick = stop;
$("continue").onclick = continueChapter;
$("undo").onclick = undoParagraph;
$("regenerate").onclick = regenerate;
$("edit").onclick = toggleEdit;
$("save").onclick = save;
for (const id of ["opening", "memory", "note"]) {
  $(id).addEventListener("input", () => { state[id] = $(id).value; persist(); });
}
for (const f of FIELDS) $(f).addEventListener("change", () => { state.settings = settings(); persist(); });
document.addEventListener("keydown", (e) => {
  if (e.key === "Escape") { stop(); return; }
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
    e.preventDefault();
    if (e.shiftKey || state.chapter) continueChapter(); else writeFromOpening();
  } else if (e.altKey && (e.key === "z" || e.key === "Z")) { e.preventDefault(); undoParagraph(); }
  else if (e.altKey && (e.key === "r" || e.key === "R")) { e.preventDefault(); regenerate(); }
  else if (e.altKey && (e.key === "e" || e.key === "E")) { e.preventDefault(); toggleEdit(); }
  else if ((e.ctrlKey || e.metaKey) && (e.key === "s" || e.key === "S")) { e.preventDefault(); save(); }
});

load();
render();
api("/v1/defaults").then((r) => r.json()).then((d) => {
  model = d.model;
  applyDefaults(d);
  setStatus(`${d.model} · context ${d.n_ctx} tokens`);
}).catch(() => setStatus("cannot reach the server"));
