"""``GET /live``: a self-contained page (no CDN, no external file) that speaks typed text through ``WS /ws/voice`` and
shows the streamed face with the web UI's canvas face (:data:`motion.webui.preview.FACE_DRAW_JS`).

The script asks for ``face: true, audio_format: "f32"``, plays each audio chunk gaplessly with the Web Audio API (the
first at ``currentTime + LEAD``, each next at the running end time; after an underrun the clock ``t0`` moves with the
audio so the face stays in step), sends ``{"type": "playing"}`` when playback starts, and on every animation frame draws
face frame ``floor((currentTime - t0) * fps)`` of those received (holding the last one; the neutral face before start).
**Microphone** streams the microphone to ``WS /ws/face`` (live mode; :data:`motion.webui.preview.LIVE_MIC_JS`) and
draws the newest frame received on every animation frame (``#live``: state ``mic``, ``frames``, ``frame``, ``rate``,
``lookahead``, ``mic-jaw``: the JawOpen of the last 1200 frames received, the first being frame ``mic-start``).
A ``?token=`` in the page's address is passed on to the WebSocket (and ``/models/info``); the page itself holds no
secret. Progress for tests and tools is in ``#live``'s data attributes: ``state`` (idle / connecting / streaming /
done / error), ``frames``, ``frame`` (drawn, -1 = neutral), ``samples``, ``time`` (s played), ``rate``, ``end-frames``,
``end-samples``.
"""

from __future__ import annotations

import functools
import json

__all__ = ["LIVE_PAGE_HEADERS", "live_page_html"]

#: response headers of the page: nothing loads from elsewhere, the address (and its token) is never sent on
LIVE_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                               "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'",
}

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Bert-VITS2 Face · live</title>
<style>
body { font: 14px system-ui, sans-serif; margin: 24px; background: #f4f4f6; color: #222; }
#live { display: flex; gap: 24px; flex-wrap: wrap; align-items: flex-start; }
.controls { display: grid; gap: 8px; width: 360px; }
.controls label { display: grid; gap: 2px; font-size: 12px; color: #555; }
.controls .row { display: flex; gap: 8px; }
.controls .row label { flex: 1; }
textarea, input { font: inherit; padding: 4px 6px; }
.controls textarea, .controls input:not([type=checkbox]) { width: 100%; box-sizing: border-box; min-width: 0; }
.controls .row label { min-width: 0; }
button { font: inherit; padding: 6px 14px; }
canvas { border-radius: 8px; display: block; }
#status { font-size: 12px; color: #555; min-height: 1.2em; margin-top: 6px; max-width: 360px; }
</style></head>
<body>
<h3>Bert-VITS2 Face · live</h3>
<div id="live" data-state="idle" data-frames="0" data-frame="-1" data-samples="0" data-time="0">
  <div class="controls">
    <label>Text<textarea id="text" rows="4">Hello there. How are you today?</textarea></label>
    <div class="row">
      <label>Model id<input id="model" type="number" min="0" value="0"></label>
      <label>Speaker<input id="speaker" list="speakers" placeholder="name or id" title="speaker name or id (default: the model's first)"></label>
      <label>Language<input id="language" list="languages" placeholder="model's"></label>
    </div>
    <datalist id="speakers"></datalist>
    <datalist id="languages"><option>ZH</option><option>JP</option><option>EN</option><option>mix</option>
      <option>auto</option></datalist>
    <label style="display:flex;gap:6px;align-items:center"><input id="split" type="checkbox" checked>
      split at sentence ends</label>
    <div class="row"><button id="speak">Speak</button><button id="stop" disabled>Stop</button></div>
    <div class="row"><button id="mic" title="your microphone drives the face live (WS /ws/face)">Microphone</button>
      <button id="micstop" disabled>Stop microphone</button></div>
  </div>
  <div><canvas id="face" width="360" height="360" style="width:360px;height:360px"></canvas>
    <div id="status">Type a text and press Speak.</div></div>
</div>
<script>
__DRAW__
(() => {
const LEAD = 0.1;  // s between the first chunk's arrival and its playback
const NAMES = __NAMES__;
const $ = (id) => document.getElementById(id);
const root = $('live'), canvas = $('face'), g2d = canvas.getContext('2d'), statusEl = $('status');
const token = new URLSearchParams(location.search).get('token') || '';
const index = (names) => { const I = {}; names.forEach((n, i) => { I[n] = i; }); return I; };
const NEUTRAL = new Array(NAMES.length).fill(0);
let run = null, ac = null, drawn = '', mic = null;

const setState = (s, msg) => { root.dataset.state = s; if (msg !== undefined) statusEl.textContent = msg; };
const busy = (b) => { $('speak').disabled = b; $('stop').disabled = !b; };
const here = (path) => new URL(path, location.href);  // relative: works behind a path prefix too

function paint() {
  const r = run;
  let v = NEUTRAL, I = index(NAMES), k = -1, t = 0;
  if (mic) {  // live: the newest frame received
    k = mic.last;
    if (k >= 0) { v = mic.frame; I = mic.I; }
    const key = 'mic:' + mic.id + ':' + k;
    if (key !== drawn) { drawFace(g2d, v, I, canvas.width, canvas.height); drawn = key; }
    root.dataset.frame = String(k);
    requestAnimationFrame(paint);
    return;
  }
  if (r && r.t0 !== null) {
    t = ac.currentTime - r.t0;
    const want = Math.floor(t * r.fps);
    if (want >= 0) {
      k = Math.min(want, r.frames.length - 1);  // hold the last frame received when the next is not there yet
      while (k >= 0 && !r.frames[k]) k--;
      if (k >= 0) { v = r.frames[k]; I = r.I; }
    }
    if (r.ended && !r.failed && r.state !== 'done' && ac.currentTime >= r.next) finish(r);
  }
  const key = (r ? r.id : 0) + ':' + k;
  if (key !== drawn) { drawFace(g2d, v, I, canvas.width, canvas.height); drawn = key; }
  root.dataset.frame = String(k);
  root.dataset.time = Math.max(0, t).toFixed(3);
  requestAnimationFrame(paint);
}

function stopAudio(r) {  // and the face: back to neutral
  for (const s of r.sources) { try { s.stop(); } catch (e) { /* not started */ } }
  r.sources = []; r.t0 = null;
}

function fail(r, msg) {
  if (r !== run || r.failed) return;
  r.failed = true; stopAudio(r);
  try { r.ws.close(); } catch (e) { /* closed */ }
  busy(false); setState('error', msg);
}

function finish(r) {
  r.state = 'done'; busy(false);
  const e = r.end;
  setState('done', `done · ${(e.samples / r.sr).toFixed(2)} s of speech, ${e.frames} face frames at ${r.fps} fps, `
    + `synthesised in ${e.elapsed_s} s` + (r.gaps ? ` · ${r.gaps} playback gap(s)` : ''));
}

function play(r, data) {
  const x = new Float32Array(data);
  if (!x.length) return;
  const buf = ac.createBuffer(1, x.length, r.sr);
  buf.copyToChannel(x, 0);
  const src = ac.createBufferSource();
  src.buffer = buf; src.connect(ac.destination);
  const now = ac.currentTime;
  if (r.t0 === null) {  // the first chunk: start the clock, tell the server when playback begins
    r.t0 = r.next = now + LEAD;
    setTimeout(() => {
      if (r === run && r.ws.readyState === WebSocket.OPEN) {
        r.ws.send(JSON.stringify({type: 'playing', offset_ms: Math.max(0, Math.round((ac.currentTime - r.t0) * 1000))}));
      }
    }, LEAD * 1000);
  } else if (r.next < now + 0.02) {  // underrun: play as soon as possible and move the face clock with the audio
    const d = now + 0.02 - r.next;
    r.t0 += d; r.next += d; r.gaps++;
  }
  src.start(r.next);
  r.next += x.length / r.sr;
  r.sources.push(src);
}

function speak() {
  const text = $('text').value.trim();
  if (!text) { setState('error', 'the text is empty'); return; }
  if (run) { stopAudio(run); try { run.ws.close(); } catch (e) { /* closed */ } }
  if (!ac) ac = new (window.AudioContext || window.webkitAudioContext)();
  ac.resume();
  const req = {text, model_id: Number($('model').value) || 0, face: true, audio_format: 'f32',
               auto_split: $('split').checked};
  const sp = $('speaker').value.trim(), lang = $('language').value.trim();
  if (/^[0-9]+$/.test(sp)) req.speaker_id = Number(sp); else if (sp) req.speaker_name = sp;
  if (lang) req.language = lang;
  const url = here('ws/voice');
  url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
  url.search = token ? '?token=' + encodeURIComponent(token) : '';
  url.hash = '';
  const r = {id: (run ? run.id : 0) + 1, ws: new WebSocket(url.href), sr: 0, fps: 60, I: index(NAMES), frames: [],
             nFrames: 0, samples: 0, pending: null, t0: null, next: 0, gaps: 0, sources: [], ended: false,
             failed: false, state: 'connecting', end: null};
  run = r;
  for (const [k, v] of [['frames', 0], ['samples', 0], ['rate', 0], ['endFrames', ''], ['endSamples', '']]) {
    root.dataset[k] = String(v);
  }
  busy(true); setState('connecting', 'connecting…');
  r.ws.binaryType = 'arraybuffer';
  r.ws.onopen = () => r.ws.send(JSON.stringify(req));
  r.ws.onmessage = (e) => {
    if (r !== run || r.failed) return;
    if (typeof e.data !== 'string') {
      const n = e.data.byteLength / 4;
      if (!r.pending || r.pending.samples !== n) { fail(r, `unexpected binary message (${n} samples)`); return; }
      r.pending = null; play(r, e.data);
      r.samples += n; root.dataset.samples = String(r.samples);
      statusEl.textContent = `streaming · ${(r.samples / r.sr).toFixed(2)} s of audio, ${r.nFrames} face frames`;
      return;
    }
    const m = JSON.parse(e.data);
    if (m.type === 'start') {
      r.sr = m.sample_rate; r.fps = m.fps || 60; if (m.names) r.I = index(m.names);
      root.dataset.rate = String(r.sr); r.state = 'streaming';
      setState('streaming', `streaming · voice ${m.voice}, ${m.sample_rate} Hz`);
    } else if (m.type === 'audio') {
      r.pending = m;
    } else if (m.type === 'face') {
      m.frames.forEach((f, i) => { r.frames[m.start + i] = f; });
      r.nFrames += m.frames.length; root.dataset.frames = String(r.nFrames);
    } else if (m.type === 'end') {
      r.ended = true; r.end = m;
      root.dataset.endFrames = String(m.frames); root.dataset.endSamples = String(m.samples);
      if (r.t0 === null) { r.t0 = ac.currentTime; r.next = r.t0; }  // no audio at all
    } else if (m.type === 'error') {
      fail(r, `error ${m.status}: ${m.detail}`);
    }
  };
  r.ws.onclose = (e) => { if (!r.ended) fail(r, `the connection closed (${e.code}${e.reason ? ': ' + e.reason : ''})`); };
}

function stop() {
  const r = run;
  if (!r) return;
  if (r.ws.readyState === WebSocket.OPEN) r.ws.send(JSON.stringify({type: 'cancel'}));
  r.failed = true; stopAudio(r); busy(false);
  setState('idle', 'stopped');
}

function micUrl() {
  const url = here('ws/face');
  url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
  url.search = token ? '?token=' + encodeURIComponent(token) : '';
  url.hash = '';
  return url.href;
}

function micStart() {  // the microphone -> /ws/face (live mode) -> the newest frame on every animation frame
  if (run) stop();
  if (mic) micStop();
  const m = {id: (mic ? mic.id : 0) + 1, last: -1, frame: null, I: index(NAMES), frames: 0, jaw: [], ctl: null};
  mic = m;
  $('mic').disabled = true; $('micstop').disabled = false; $('speak').disabled = true;
  for (const [k, v] of [['frames', 0], ['micJaw', ''], ['micStart', 0], ['lookahead', '']]) root.dataset[k] = String(v);
  setState('mic-connecting', 'asking for the microphone…');
  m.ctl = bvfMic(micUrl(), {
    start: (msg, rate) => {
      if (msg.names) m.I = index(msg.names);
      root.dataset.rate = String(rate); root.dataset.lookahead = String(msg.lookahead_s);
      setState('mic', `live · microphone at ${rate} Hz · the face follows ~${Math.round(1000 * msg.lookahead_s)} ms `
        + `(lookahead) + ${Math.round(512000 / rate)} ms (one block) + compute behind your voice`);
    },
    frames: (start, frames) => {
      if (mic !== m || !frames.length) return;
      const J = m.I.JawOpen;
      for (const f of frames) m.jaw.push(Math.round(1000 * f[J]) / 1000);
      if (m.jaw.length > 1200) { root.dataset.micStart = String(start + frames.length - 1200); m.jaw.splice(0, m.jaw.length - 1200); }
      m.last = start + frames.length - 1; m.frame = frames[frames.length - 1]; m.frames += frames.length;
      root.dataset.frames = String(m.frames); root.dataset.micJaw = m.jaw.join(',');
    },
    end: (msg) => { if (mic === m) { setState('done', `microphone stopped · ${(msg.samples / Number(root.dataset.rate || 1)).toFixed(1)} s, ${m.frames} frames`); micDone(); } },
    error: (text) => { if (mic === m) { setState('error', text); micDone(); } },
  });
}

function micDone() {
  $('mic').disabled = false; $('micstop').disabled = true; $('speak').disabled = false;
  mic = null;
}

function micStop() {
  if (!mic) return;
  mic.ctl.stop();
  setState('mic-stopping', 'stopping the microphone…');
}

function loadSpeakers() {  // optional: the loaded models' speakers for the speaker box
  fetch(here('models/info'), {headers: token ? {Authorization: 'Bearer ' + token} : {}})
    .then((resp) => (resp.ok ? resp.json() : null)).then((info) => {
      const m = info && info[String(Number($('model').value) || 0)];
      $('speakers').replaceChildren(...(m ? Object.keys(m.spk2id) : []).map((s) => new Option(s)));
      $('language').placeholder = m ? `model's (${m.language})` : "model's";
    }).catch(() => {});
}

$('speak').addEventListener('click', speak);
$('stop').addEventListener('click', stop);
$('mic').addEventListener('click', micStart);
$('micstop').addEventListener('click', micStop);
$('model').addEventListener('change', loadSpeakers);
loadSpeakers();
requestAnimationFrame(paint);
})();
</script>
</body></html>
"""


@functools.lru_cache(maxsize=1)
def live_page_html() -> str:
    """The page (built on first use, the same for every request: nothing request-specific or secret is in it)."""
    from motion.arkit import NAMES
    from motion.webui.preview import FACE_DRAW_JS, LIVE_MIC_JS

    return _PAGE.replace("__DRAW__", FACE_DRAW_JS + LIVE_MIC_JS).replace("__NAMES__", json.dumps(list(NAMES)))
