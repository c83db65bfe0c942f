"""The page at / of `seqtasks serve`: type a text (or drop an image), see the output stream in.

One self-contained HTML file (no script or style from elsewhere: the server may be offline). A run
that writes text streams from POST /generate ("stream": true), reading the server-sent events off
the response body (EventSource can only GET); other runs show POST /predict's JSON. Query
parameters fill the form and run it (/?text=ROMEO:&tokens=50&run=1), which is how
benchmarks/serve_page.py checks the page in headless Chromium.
"""
from __future__ import annotations

import html
import json

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>seqtasks: __TITLE__</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body { font: 15px/1.45 system-ui, sans-serif; max-width: 52rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
 h1 { font-size: 1.3rem; margin-bottom: .2rem; } .sub { color: #666; margin-top: 0; }
 textarea { width: 100%; box-sizing: border-box; font: 14px monospace; padding: .5rem; }
 #drop { border: 2px dashed #999; border-radius: 6px; padding: 1.5rem; text-align: center; color: #555; }
 #drop.over { background: #eef; } #drop img { max-height: 8rem; display: block; margin: .5rem auto 0; }
 .row { display: flex; gap: 1rem; align-items: center; margin: .6rem 0; flex-wrap: wrap; }
 label { font-size: .9rem; color: #444; } input[type=number] { width: 5rem; }
 button { font-size: 1rem; padding: .35rem 1.2rem; }
 #output { white-space: pre-wrap; font: 14px monospace; background: #f6f6f6; border-radius: 6px;
           padding: .8rem; min-height: 4rem; } .error { color: #b00; }
</style></head>
<body>
<h1>seqtasks: __TITLE__</h1>
<p class="sub" id="about">__ABOUT__ &middot; <a href="/docs">API docs</a> &middot; <a href="/info">run info</a></p>
<div id="input-area">__INPUT__</div>
<div class="row" id="options">__OPTIONS__<button id="go">Run</button><span id="status"></span></div>
<div id="output"></div>
<script>
const SETUP = __SETUP__;
const output = document.getElementById("output"), status = document.getElementById("status");
let image = null;  // the dropped image as a data: URL

if (SETUP.images) {
  const drop = document.getElementById("drop"), picker = document.getElementById("file");
  const take = file => { const reader = new FileReader();
    reader.onload = () => { image = reader.result;
      drop.innerHTML = "image: " + file.name + "<img alt='' src='" + image + "'>"; };
    reader.readAsDataURL(file); };
  drop.addEventListener("click", () => picker.click());
  picker.addEventListener("change", () => picker.files[0] && take(picker.files[0]));
  drop.addEventListener("dragover", e => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", e => { e.preventDefault(); drop.classList.remove("over");
    if (e.dataTransfer.files[0]) take(e.dataTransfer.files[0]); });
}

function showError(body) {
  const e = body.error || {}; output.innerHTML = "";
  const line = document.createElement("span"); line.className = "error";
  line.textContent = (e.field ? e.field + ": " : "") + (e.message || JSON.stringify(body));
  output.appendChild(line);
}

function request() {
  const body = {};
  if (SETUP.images) { if (!image) throw new Error("drop an image first"); body.image = image; }
  else { const text = document.getElementById("text").value; body[SETUP.generative ? "prompt" : "text"] = text; }
  if (SETUP.generative) {
    body.stream = true;
    for (const [id, key, parse] of [["temperature", "temperature", parseFloat], ["tokens", "max_new_tokens", parseInt]]) {
      const value = document.getElementById(id).value; if (value !== "") body[key] = parse(value);
    }
  }
  return body;
}

async function run() {
  let body;
  try { body = request(); } catch (e) { showError({error: {message: e.message}}); return; }
  output.textContent = SETUP.continues && !SETUP.images ? body.prompt : "";
  status.textContent = "running...";
  const response = await fetch(SETUP.generative ? "/generate" : "/predict",
    {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
  if (!response.ok) { showError(await response.json()); status.textContent = response.status; return; }
  if (!SETUP.generative) { output.textContent = JSON.stringify((await response.json()).output, null, 2);
                           status.textContent = "done"; return; }
  const reader = response.body.getReader(), decoder = new TextDecoder();
  let buffered = "";
  for (;;) {
    const {value, done} = await reader.read(); if (done) break;
    buffered += decoder.decode(value, {stream: true});
    let end;
    while ((end = buffered.indexOf("\\n\\n")) >= 0) {
      const event = buffered.slice(0, end); buffered = buffered.slice(end + 2);
      const kind = (event.match(/^event: (.*)$/m) || [, "message"])[1];
      const data = JSON.parse((event.match(/^data: (.*)$/m) || [, "{}"])[1]);
      if (kind === "message") output.textContent += data.text;
      else if (kind === "error") showError(data);
    }
  }
  status.textContent = "done";
}
document.getElementById("go").addEventListener("click", run);
// /?text=...&temperature=...&tokens=...&run=1 fills the form (and runs it): a link to a given try
const params = new URLSearchParams(location.search);
for (const id of ["text", "temperature", "tokens"]) {
  const box = document.getElementById(id); if (box && params.has(id)) box.value = params.get(id);
}
if (params.get("run") === "1") run();
</script>
</body></html>
"""

_TEXT = '<textarea id="text" rows="4" placeholder="type a {what}">{example}</textarea>'
_IMAGE = '<div id="drop">drop an image here, or click to choose one</div><input type="file" id="file" accept="image/*" hidden>'
_GENERATION = ('<label>temperature <input type="number" id="temperature" step="0.1" min="0" value="0.8"></label>'
               '<label>new tokens <input type="number" id="tokens" min="1" value="{tokens}"></label>')


def render(title: str, images: bool, generative: bool, continues: bool = False, description: str = "",
           example: str = "", tokens: int = 100) -> str:
    """The page for a run: an image drop zone or a text box; generation options when the run writes text."""
    what = "prompt" if generative else "text"
    inputs = _IMAGE if images else _TEXT.format(what=what, example=html.escape(example))
    setup = json.dumps({"images": images, "generative": generative, "continues": continues})
    return (_PAGE.replace("__TITLE__", html.escape(title)).replace("__ABOUT__", html.escape(description))
            .replace("__INPUT__", inputs).replace("__OPTIONS__", _GENERATION.format(tokens=tokens) if generative else "")
            .replace("__SETUP__", setup))
