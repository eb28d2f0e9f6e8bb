"""The service's page: paste or drop text, see the verdict and the coloured tokens.

One self-contained HTML document (inline CSS and script, no external assets, works offline).
The result view is rendered by the server with `watermark.report.result_html`, the same code
that writes `wm detect --html` reports; the script only sends texts and inserts that HTML.
Its Content-Security-Policy admits exactly this inline script (by hash) and nothing else.
"""

from __future__ import annotations

import base64
import hashlib

from ..report import CSS

SCRIPT = r"""
"use strict";
const $ = (id) => document.getElementById(id);
let fileTexts = null;

function setStatus(msg, isError) {
  const s = $("status");
  s.textContent = msg;
  s.className = isError ? "wm-status wm-status-error" : "wm-status";
}

function parseFile(name, content) {
  if (!/\.jsonl$|\.ndjson$/i.test(name)) return [content];
  const texts = [];
  content.split("\n").forEach((line, i) => {
    if (!line.trim()) return;
    let obj;
    try { obj = JSON.parse(line); } catch (e) { throw new Error(name + ":" + (i + 1) + ": not valid JSON"); }
    if (!obj || typeof obj.text !== "string") throw new Error(name + ":" + (i + 1) + ': no string "text" field');
    texts.push(obj.text);
  });
  if (!texts.length) throw new Error(name + ": holds no records");
  return texts;
}

async function loadFile(file) {
  try {
    const content = await file.text();
    fileTexts = parseFile(file.name, content);
    $("fileinfo").textContent = file.name + ": " + fileTexts.length + " text(s) loaded";
    $("clearfile").hidden = false;
    if (fileTexts.length === 1) $("text").value = fileTexts[0];
    setStatus("", false);
  } catch (e) {
    fileTexts = null;
    setStatus(e.message, true);
  }
}

function clearFile() {
  fileTexts = null;
  $("fileinfo").textContent = "";
  $("clearfile").hidden = true;
  $("file").value = "";
}

async function check() {
  const pasted = $("text").value;
  const texts = fileTexts && fileTexts.length > 1 ? fileTexts : [pasted];
  if (!texts.some((t) => t.trim())) { setStatus("paste a text or drop a .txt / .jsonl file first", true); return; }
  const headers = { "Content-Type": "application/json" };
  const token = $("token").value.trim();
  if (token) headers["Authorization"] = "Bearer " + token;
  $("check").disabled = true;
  setStatus("checking " + texts.length + " text(s)...", false);
  try {
    const r = await fetch("v1/detect", {
      method: "POST", headers, body: JSON.stringify({ texts, tokens: true, html: true }),
    });
    let body = {};
    try { body = await r.json(); } catch (e) { body = { error: r.statusText || "no answer" }; }
    if (!r.ok) {
      const wait = r.headers.get("Retry-After");
      setStatus("HTTP " + r.status + ": " + (body.error || r.statusText) + (wait ? " (retry in " + wait + " s)" : ""), true);
      return;
    }
    $("results").innerHTML = body.html;
    const n = body.results.length;
    const marked = body.results.filter((x) => x.verdict === "watermarked").length;
    setStatus(n + " text(s) checked: " + marked + " watermarked", false);
  } catch (e) {
    setStatus("request failed: " + e.message, true);
  } finally {
    $("check").disabled = false;
  }
}

$("check").addEventListener("click", check);
$("file").addEventListener("change", (ev) => { if (ev.target.files.length) loadFile(ev.target.files[0]); });
$("clearfile").addEventListener("click", clearFile);
const drop = $("drop");
["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (ev) => { ev.preventDefault(); drop.classList.add("wm-drag"); }));
["dragleave", "drop"].forEach((t) => drop.addEventListener(t, () => drop.classList.remove("wm-drag")));
drop.addEventListener("drop", (ev) => {
  ev.preventDefault();
  if (ev.dataTransfer.files.length) loadFile(ev.dataTransfer.files[0]);
});
"""

PAGE_CSS = """
textarea { width: 100%; min-height: 10rem; box-sizing: border-box; font: 0.95rem ui-monospace, monospace;
  padding: 0.5rem; border: 1px solid #bbb; border-radius: 4px; }
#drop { border: 2px dashed #bbb; border-radius: 6px; padding: 0.6rem; }
#drop.wm-drag { border-color: #0a7d32; background: #f2fbf5; }
.wm-row { display: flex; gap: 0.8rem; align-items: center; flex-wrap: wrap; margin: 0.6rem 0; }
button { font: inherit; padding: 0.35rem 1rem; cursor: pointer; }
input[type=password] { font: inherit; padding: 0.25rem; width: 18rem; }
.wm-status { min-height: 1.4rem; } .wm-status-error { color: #b3261e; font-weight: 600; }
"""

BODY = """
<h1>Is this text watermarked?</h1>
<p class="wm-meta">Paste a text or drop a .txt or .jsonl file (one JSON object with a "text" field per line).
The key stays on the server; the verdict is "watermarked" when the p-value is at most the server's alpha.</p>
<div id="drop">
  <textarea id="text" placeholder="Paste text here, or drop a file onto this box"></textarea>
  <div class="wm-row">
    <label>or a file: <input type="file" id="file" accept=".txt,.jsonl,.ndjson,text/plain"></label>
    <span id="fileinfo" class="wm-meta"></span><button id="clearfile" type="button" hidden>clear file</button>
  </div>
</div>
<div class="wm-row">
  <label>Access token (if the server asks for one):
    <input type="password" id="token" autocomplete="off" spellcheck="false"></label>
  <button id="check" type="button">Check</button>
</div>
<div id="status" class="wm-status" role="status"></div>
<div id="results"></div>
"""


def script_hash() -> str:
    digest = hashlib.sha256(SCRIPT.encode("utf-8")).digest()
    return "sha256-" + base64.b64encode(digest).decode("ascii")


def content_security_policy() -> str:
    return (
        f"default-src 'none'; script-src '{script_hash()}'; style-src 'unsafe-inline'; "
        "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


def page_html() -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>wm: watermark detection</title>"
        f"<style>{CSS}{PAGE_CSS}</style></head><body>{BODY}<script>{SCRIPT}</script></body></html>\n"
    )
