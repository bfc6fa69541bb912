"""The face preview in the web page: a 2D face drawn on a canvas from the 61 values, in sync with an audio player.

A result folder gets ``<stem>.face.json`` (names, fps, frames rounded to 1/1000) beside its wav; :func:`preview_html`
is the value of a ``gr.HTML(js_on_load=PREVIEW_JS)`` component: a canvas plus a native ``<audio controls>`` element.
The script fetches the JSON from the app's own file route (the outputs folder is an allowed path: nothing comes from the
internet) and draws frame ``floor(currentTime * fps)`` on every animation frame while playing and on ``timeupdate``,
``seeked``, ``pause`` and ``ended``, so seeking, pausing and replaying stay in sync. The geometry is a port of
:func:`motion.face.render.face_shapes` (the MP4 export draws the same face); keep the two in step.

The same component can show any curves + audio (a live stream can call :func:`preview_html` on its files);
:data:`FACE_DRAW_JS` (the drawing alone) is shared with the server's ``GET /live`` page.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

import numpy as np

from bert_vits2.fileio import atomic_write
from motion.arkit import NAMES
from motion.face.render import COLORS

__all__ = ["FACE_DRAW_JS", "LIVE_MIC_JS", "MIC_JS", "PREVIEW_JS", "mic_html", "empty_preview", "preview_html", "write_preview_json"]


def write_preview_json(path: str | os.PathLike, frames: np.ndarray, fps: float, block: int = 2000) -> Path:
    """``{"names", "fps", "frames"}`` with values rounded to 1/1000 (small enough to fetch at once).

    Written ``block`` frames at a time (the same text as one ``json.dumps``): ten minutes of frames as one Python
    list would take ~100 MB for a moment."""
    frames = np.asarray(frames)
    if frames.ndim != 2:
        raise ValueError(f"face frames must be [T, 61], got shape {list(frames.shape)}")
    head = json.dumps({"names": list(NAMES), "fps": float(fps)}, ensure_ascii=False)[:-1] + ', "frames": ['
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(head)
        for i in range(0, len(frames), block):
            rows = np.round(np.asarray(frames[i: i + block], dtype=np.float64), 3).tolist()
            f.write((", " if i else "") + json.dumps(rows)[1:-1])
        f.write("]}\n")
    return Path(path)


def _file_url(path: str | os.PathLike) -> str:
    """The app's own route for a file under an allowed path (relative to the page)."""
    from urllib.parse import quote

    return "gradio_api/file=" + quote(str(Path(path).resolve()))


def preview_html(face_json: str | os.PathLike, wav: str | os.PathLike, label: str = "", size: int = 360) -> str:
    """The preview of one result: a ``size`` px canvas and an audio player (paths must be under the outputs folder)."""
    face_url, wav_url = html.escape(_file_url(face_json), quote=True), html.escape(_file_url(wav), quote=True)
    return (f'<div class="bvf-preview" data-face="{face_url}" data-label="{html.escape(label, quote=True)}">'
            f'<canvas width="{int(size)}" height="{int(size)}" style="width:{int(size)}px;height:{int(size)}px;'
            'border-radius:8px;display:block"></canvas>'
            f'<audio controls preload="auto" src="{wav_url}" style="width:{int(size)}px;margin-top:6px"></audio>'
            '<div class="bvf-info" style="font-size:12px;opacity:.7"></div></div>')


def empty_preview(message: str = "The face appears here with the result.") -> str:
    return f'<div class="bvf-empty" style="opacity:.7">{html.escape(message)}</div>'


_COLORS_JS = json.dumps(COLORS)

#: ``faceShapes(v, I, W, H)`` and ``drawFace(ctx, v, I, W, H)`` (``I``: Live Link name -> index), a port of
#: motion.face.render.face_shapes (keep in step); also used by the server's live page (motion.server.live_page)
FACE_DRAW_JS = r"""
const COLORS = __COLORS__;
function faceShapes(v, I, W, H) {
  const g = (n) => { const x = v[I[n]]; return Number.isFinite(x) ? x : 0; };
  const u = Math.min(W, H), cx = W / 2, cy = H / 2 - 0.02 * u;
  const roll = g('HeadRoll') * Math.PI, ys = Math.sin(g('HeadYaw') * Math.PI), ps = Math.sin(g('HeadPitch') * Math.PI);
  const cr = Math.cos(roll), sr = Math.sin(roll);
  const tf = (pts, par) => { const dx = -ys * 0.6 * par, dy = ps * 0.6 * par;
    return pts.map(([x, y]) => [cx + u * (x * cr - y * sr + dx), cy + u * (x * sr + y * cr + dy)]); };
  const out = [];
  const poly = (pts, par, c) => out.push({k: 'poly', p: tf(pts, par), c});
  const line = (pts, par, c, w) => out.push({k: 'line', p: tf(pts, par), c, w: w * u});
  const circle = (x, y, r, par, c) => out.push({k: 'circle', p: tf([[x, y]], par), c, w: r * u});
  const jaw = g('JawOpen');
  poly([[-0.12, 0.25], [0.12, 0.25], [0.15, 0.6], [-0.15, 0.6]], 0.15, COLORS.neck);
  const rx = 0.30 + 0.02 * g('CheekPuff'), ryTop = 0.37, ryBot = 0.38 + 0.06 * jaw;
  const outline = [];
  for (let k = 0; k < 64; k++) { const a = 2 * Math.PI * k / 64, s = Math.sin(a);
    outline.push([rx * Math.cos(a) * (1 - 0.12 * Math.max(s, 0) ** 2), (s > 0 ? ryBot : ryTop) * s]); }
  poly(outline, 0.4, COLORS.skin);
  for (const [side, sg] of [['Left', 1], ['Right', -1]]) {
    circle(sg * (0.17 + 0.02 * g('CheekPuff')), 0.10 - 0.02 * g('CheekSquint' + side), 0.045 + 0.025 * g('CheekPuff'),
           0.8, COLORS.cheek);
  }
  for (const [side, sg] of [['Left', 1], ['Right', -1]]) {
    const ex = sg * 0.11, ey = -0.04, wide = g('EyeWide' + side), squint = g('EyeSquint' + side);
    const erx = 0.055, ery = 0.032 * (1 + 0.6 * wide - 0.25 * squint);
    const close = Math.min(1, Math.max(0, g('EyeBlink' + side) + 0.3 * squint));
    const upper = [], lower = [];
    for (let k = 0; k <= 16; k++) { const x = erx * Math.cos(Math.PI - Math.PI * k / 16);
      const h = ery * Math.sqrt(Math.max(0, 1 - (x / erx) ** 2));
      upper.push([ex + x, ey - h + close * 1.85 * h]); lower.push([ex + x, ey + h]); }
    poly(upper.concat(lower.slice().reverse()), 1, COLORS.white);
    let yaw = g(side + 'EyeYaw') * 180, pitch = g(side + 'EyePitch') * 180;
    if (Math.abs(yaw) < 1e-3 && Math.abs(pitch) < 1e-3) {
      const o = g('EyeLookOut' + side), i = g('EyeLookIn' + side);
      yaw = 30 * (side === 'Left' ? o - i : i - o);
      pitch = 25 * (g('EyeLookDown' + side) - g('EyeLookUp' + side));
    }
    const gx = Math.max(-0.032, Math.min(0.032, yaw / 30 * 0.03)), gy = Math.max(-0.02, Math.min(0.02, pitch / 25 * 0.02));
    circle(ex + gx, ey + gy, 0.021, 1, COLORS.iris);
    circle(ex + gx, ey + gy, 0.009, 1, COLORS.pupil);
    const box = 0.032 * 1.6 + 0.02;
    poly(upper.concat([[ex + erx + 0.01, ey - box], [ex - erx - 0.01, ey - box]]), 1, COLORS.skin);
    poly(lower.concat([[ex + erx + 0.01, ey + box], [ex - erx - 0.01, ey + box]]), 1, COLORS.skin);
    line(upper, 1, COLORS.lid, 0.007);
    line(lower, 1, COLORS.outline, 0.003);
  }
  for (const [side, sg] of [['Left', 1], ['Right', -1]]) {
    const inner = g('BrowInnerUp'), outer = g('BrowOuterUp' + side), down = g('BrowDown' + side);
    line([[sg * (0.05 - 0.012 * down), -0.115 - 0.05 * inner + 0.035 * down],
          [sg * 0.11, -0.135 - 0.03 * (0.5 * inner + outer) + 0.02 * down],
          [sg * 0.165, -0.115 - 0.05 * outer + 0.01 * down]], 1, COLORS.brow, 0.018);
  }
  line([[0, -0.01], [0.012, 0.07], [0, 0.085]], 1.1, COLORS.nose, 0.006);
  for (const [side, sg] of [['Left', 1], ['Right', -1]]) circle(sg * (0.02 + 0.004 * g('NoseSneer' + side)), 0.088 - 0.02 * g('NoseSneer' + side), 0.008, 1.1, COLORS.nose);
  const avg = (n) => 0.5 * (g(n + 'Left') + g(n + 'Right'));
  const pucker = g('MouthPucker'), funnel = g('MouthFunnel');
  const mx = 0.03 * (g('MouthLeft') - g('MouthRight')) + 0.015 * (g('JawLeft') - g('JawRight'));
  const yc = 0.19 + 0.035 * jaw;
  let ap = Math.max(0, jaw - g('MouthClose')) * 0.16 + 0.02 * funnel + 0.012 * (avg('MouthUpperUp') + avg('MouthLowerDown'));
  if (jaw - g('MouthClose') <= 0 && funnel < 0.05) ap = 0;
  const press = avg('MouthPress');
  const tUp = 0.016 * (1 - 0.7 * g('MouthRollUpper') + 0.3 * pucker - 0.4 * press + 0.3 * g('MouthShrugUpper'));
  const tLo = 0.02 * (1 - 0.7 * g('MouthRollLower') + 0.3 * pucker - 0.4 * press + 0.3 * g('MouthShrugLower'));
  const hw = {}, cyy = {};
  for (const side of ['Left', 'Right']) {
    hw[side] = 0.085 * Math.max(0.3, 1 + 0.35 * g('MouthSmile' + side) + 0.35 * g('MouthStretch' + side)
                                + 0.1 * g('MouthDimple' + side) - 0.45 * pucker - 0.3 * funnel);
    cyy[side] = yc - 0.04 * g('MouthSmile' + side) + 0.04 * g('MouthFrown' + side);
  }
  const curve = (mid, shrink = 1) => { const pts = [];
    for (let k = 0; k <= 16; k++) { const s = -1 + 2 * k / 16, side = s > 0 ? 'Left' : 'Right';
      pts.push([mx + s * hw[side] * shrink, cyy[side] + (mid - cyy[side]) * (1 - s * s)]); }
    return pts; };
  const upIn = yc - 0.35 * ap - 0.025 * avg('MouthUpperUp'), loIn = yc + 0.65 * ap;
  poly(curve(upIn - tUp).concat(curve(loIn + tLo).reverse()), 1, COLORS.lip);
  if (ap > 0.002) {
    poly(curve(upIn).concat(curve(loIn).reverse()), 1, COLORS.mouth);
    if (ap > 0.012) { const t = Math.min(0.3 * ap, 0.012);
      poly(curve(upIn, 0.75).concat(curve(upIn + t, 0.75).reverse()), 1, COLORS.teeth); }
    if (g('TongueOut') > 0.05) circle(mx, loIn - 0.004 + 0.02 * g('TongueOut'), 0.02 + 0.012 * g('TongueOut'), 1, COLORS.tongue);
  } else {
    line(curve(upIn), 1, COLORS.lipline, 0.004);
  }
  return out;
}
function drawFace(ctx, v, I, W, H) {
  ctx.fillStyle = COLORS.background; ctx.fillRect(0, 0, W, H);
  for (const s of faceShapes(v, I, W, H)) {
    ctx.beginPath();
    if (s.k === 'circle') { ctx.arc(s.p[0][0], s.p[0][1], s.w, 0, 2 * Math.PI); ctx.fillStyle = s.c; ctx.fill(); continue; }
    s.p.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
    if (s.k === 'poly') { ctx.closePath(); ctx.fillStyle = s.c; ctx.fill(); }
    else { ctx.strokeStyle = s.c; ctx.lineWidth = Math.max(1, s.w); ctx.lineJoin = 'round'; ctx.lineCap = 'round'; ctx.stroke(); }
  }
}
""".replace("__COLORS__", _COLORS_JS)
_DRAW_JS = FACE_DRAW_JS  # the old private name

#: ``bvfMic(wsUrl, on)``: the microphone mode of the web UI and the server's ``/live`` page. Captures the microphone
#: (getUserMedia, no echo cancellation / noise suppression / gain control: they change the mouth's sound), posts its
#: PCM in 512-sample float32 blocks (~11 ms at 48 kHz; a ScriptProcessor: an AudioWorklet would need a module URL that
#: the ``/live`` page's CSP does not allow) over a ``/ws/face`` socket in live mode, and calls ``on.start(msg, rate)``,
#: ``on.frames(start, frames)``, ``on.end(msg)``, ``on.error(text)``. Returns ``{stop(), sent}``; ``stop()`` sends
#: ``end`` and the socket finishes with the last frames.
LIVE_MIC_JS = r"""
function bvfMic(wsUrl, on) {
  const ctl = {ws: null, ac: null, stream: null, node: null, src: null, stopped: false, sent: 0};
  const release = () => {
    try { if (ctl.node) ctl.node.disconnect(); if (ctl.src) ctl.src.disconnect(); } catch (e) { /* gone */ }
    if (ctl.stream) ctl.stream.getTracks().forEach((t) => t.stop());
    if (ctl.ac) ctl.ac.close().catch(() => {});
  };
  const fail = (text) => {
    if (ctl.stopped) return;
    ctl.stopped = true; release();
    try { if (ctl.ws) ctl.ws.close(); } catch (e) { /* closed */ }
    on.error(text);
  };
  ctl.stop = () => {
    if (ctl.stopped) return;
    ctl.stopped = true; release();
    if (ctl.ws && ctl.ws.readyState === WebSocket.OPEN) ctl.ws.send(JSON.stringify({type: 'end'}));
    else if (ctl.ws) ctl.ws.close();
  };
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    setTimeout(() => fail('the browser gives no microphone to this page (open it over https or on localhost)'), 0);
    return ctl;
  }
  navigator.mediaDevices.getUserMedia({audio: {channelCount: 1, echoCancellation: false, noiseSuppression: false,
                                               autoGainControl: false}})
    .then((stream) => {
      if (ctl.stopped) { stream.getTracks().forEach((t) => t.stop()); return; }
      ctl.stream = stream;
      const ac = ctl.ac = new (window.AudioContext || window.webkitAudioContext)();
      const ws = ctl.ws = new WebSocket(wsUrl);
      ws.binaryType = 'arraybuffer';
      ws.onopen = () => {
        ws.send(JSON.stringify({sample_rate: ac.sampleRate, audio_format: 'f32', mode: 'live'}));
        ctl.src = ac.createMediaStreamSource(stream);
        const node = ctl.node = ac.createScriptProcessor(512, 1, 1), mute = ac.createGain();
        mute.gain.value = 0;  // the processor must reach the output to run; nothing is heard
        node.onaudioprocess = (e) => {
          if (ctl.stopped || ws.readyState !== WebSocket.OPEN) return;
          const x = new Float32Array(e.inputBuffer.getChannelData(0));
          ws.send(x.buffer); ctl.sent += x.length;
        };
        ctl.src.connect(node); node.connect(mute); mute.connect(ac.destination);
        ac.resume();
      };
      ws.onmessage = (e) => {
        if (typeof e.data !== 'string') return;
        const m = JSON.parse(e.data);
        if (m.type === 'start') on.start(m, ac.sampleRate);
        else if (m.type === 'face') on.frames(m.start, m.frames);
        else if (m.type === 'end') { on.end(m); ws.close(); }
        else if (m.type === 'error') { ctl.stopped = false; fail(`error ${m.status}: ${m.detail}`); }
      };
      ws.onclose = (e) => { if (!ctl.stopped) fail(`the connection closed (${e.code}${e.reason ? ': ' + e.reason : ''})`); };
    })
    .catch((err) => fail('no microphone: ' + ((err && (err.message || err.name)) || err)
                         + ' (allow the microphone for this page, or plug one in)'));
  return ctl;
}
"""

#: ``js_on_load`` of the preview component (``element``, ``watch`` are gradio's)
PREVIEW_JS = FACE_DRAW_JS + r"""
function bvfSetup() {
  const box = element.querySelector('.bvf-preview');
  if (!box || box.dataset.ready === '1') return;
  box.dataset.ready = '1';
  const canvas = box.querySelector('canvas'), audio = box.querySelector('audio'), info = box.querySelector('.bvf-info');
  const ctx = canvas.getContext('2d');
  let data = null, I = null, raf = 0;
  const root = (window.gradio_config && window.gradio_config.root) ? window.gradio_config.root.replace(/\/$/, '') + '/' : '';
  const url = (u) => (root && !/^https?:/.test(u) ? root + u : u);
  if (!audio.src.startsWith('http') || root) audio.src = url(audio.getAttribute('src'));
  const paint = () => {
    if (!data || !data.frames.length) return;
    const i = Math.max(0, Math.min(data.frames.length - 1, Math.floor(audio.currentTime * data.fps)));
    drawFace(ctx, data.frames[i], I, canvas.width, canvas.height);
    box.dataset.frame = String(i);
    info.textContent = `${audio.currentTime.toFixed(2)} s · frame ${i + 1}/${data.frames.length} · ${data.fps} fps`;
  };
  const loop = () => { paint(); raf = (!audio.paused && !audio.ended) ? requestAnimationFrame(loop) : 0; };
  audio.addEventListener('play', () => { if (!raf) raf = requestAnimationFrame(loop); });
  for (const e of ['timeupdate', 'seeking', 'seeked', 'pause', 'ended', 'loadeddata']) audio.addEventListener(e, paint);
  fetch(url(box.dataset.face)).then((r) => r.json()).then((d) => {
    data = d; I = {}; d.names.forEach((n, i) => { I[n] = i; });
    box.dataset.loaded = '1'; paint();
  }).catch((err) => { info.textContent = 'could not load the face: ' + err; });
}
bvfSetup();
if (typeof watch === 'function') watch('value', bvfSetup);
new MutationObserver(bvfSetup).observe(element, {childList: true, subtree: true});
"""



def mic_html(size: int = 360) -> str:
    """The web UI's microphone mode: a ``size`` px canvas, start/stop buttons and a status line (:data:`MIC_JS`)."""
    return (f'<div class="bvf-mic" data-state="idle" data-frames="0" data-frame="-1" data-names="'
            f'{html.escape(json.dumps(list(NAMES)), quote=True)}">'
            '<div style="display:flex;gap:8px;margin-bottom:6px"><button class="bvf-mic-go lg secondary">Start the '
            'microphone</button><button class="bvf-mic-stop lg secondary" disabled>Stop</button></div>'
            f'<canvas width="{int(size)}" height="{int(size)}" style="width:{int(size)}px;height:{int(size)}px;'
            'border-radius:8px;display:block"></canvas>'
            '<div class="bvf-info" style="font-size:12px;opacity:.7">Press start and speak: the face follows your '
            'voice.</div></div>')


#: ``js_on_load`` of the microphone component: the microphone -> this app's ``WS /ws/face`` (live mode, served by the
#: same web server: :func:`motion.webui.app.live_face_socket`) -> the newest frame drawn on every animation frame.
#: The box's data attributes are those of the server's ``/live`` page (``state``, ``frames``, ``frame``, ``rate``,
#: ``lookahead``, ``mic-jaw``, ``mic-start``).
MIC_JS = FACE_DRAW_JS + LIVE_MIC_JS + r"""
(function () {
  const box = element.querySelector('.bvf-mic');
  if (!box || box.dataset.ready === '1') return;
  box.dataset.ready = '1';
  const canvas = box.querySelector('canvas'), g2d = canvas.getContext('2d'), info = box.querySelector('.bvf-info');
  const go = box.querySelector('.bvf-mic-go'), halt = box.querySelector('.bvf-mic-stop');
  const index = (names) => { const I = {}; names.forEach((n, i) => { I[n] = i; }); return I; };
  const NAMES = JSON.parse(box.dataset.names), NEUTRAL = new Array(NAMES.length).fill(0);
  let mic = null, drawn = '';
  const base = (window.gradio_config && window.gradio_config.root) ? window.gradio_config.root.replace(/\/$/, '') + '/'
    : location.href;
  const wsUrl = () => {
    const u = new URL('ws/face', base);
    u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:'; u.search = ''; u.hash = '';
    return u.href;
  };
  const say = (state, text) => { box.dataset.state = state; info.textContent = text; };
  const paint = () => {
    const k = mic ? mic.last : -1, key = (mic ? mic.id : 0) + ':' + k;
    if (key !== drawn) {
      drawFace(g2d, k >= 0 ? mic.frame : NEUTRAL, k >= 0 ? mic.I : index(NAMES), canvas.width, canvas.height);
      drawn = key; box.dataset.frame = String(k);
    }
    requestAnimationFrame(paint);
  };
  const done = () => { go.disabled = false; halt.disabled = true; };
  go.addEventListener('click', () => {
    const m = {id: (mic ? mic.id + 1 : 1), last: -1, frame: null, I: index(NAMES), frames: 0, jaw: [], rate: 0};
    mic = m; go.disabled = true; halt.disabled = false;
    for (const [k, v] of [['frames', 0], ['micJaw', ''], ['micStart', 0], ['lookahead', '']]) box.dataset[k] = String(v);
    say('mic-connecting', 'asking for the microphone…');
    m.ctl = bvfMic(wsUrl(), {
      start: (msg, rate) => {
        if (msg.names) m.I = index(msg.names);
        m.rate = rate; box.dataset.rate = String(rate); box.dataset.lookahead = String(msg.lookahead_s);
        say('mic', `live · ${rate} Hz · the face follows ~${Math.round(1000 * msg.lookahead_s)} ms (lookahead) + `
          + `${Math.round(512000 / rate)} ms (one block) + compute behind your voice`);
      },
      frames: (start, frames) => {
        if (mic !== m || !frames.length) return;
        const J = m.I.JawOpen;
        for (const f of frames) m.jaw.push(Math.round(1000 * f[J]) / 1000);
        if (m.jaw.length > 1200) { box.dataset.micStart = String(start + frames.length - 1200); m.jaw.splice(0, m.jaw.length - 1200); }
        m.last = start + frames.length - 1; m.frame = frames[frames.length - 1]; m.frames += frames.length;
        box.dataset.frames = String(m.frames); box.dataset.micJaw = m.jaw.join(',');
      },
      end: (msg) => { if (mic === m) { say('done', `stopped · ${(msg.samples / (m.rate || 1)).toFixed(1)} s, ${m.frames} frames`); done(); } },
      error: (text) => { if (mic === m) { say('error', text); done(); } },
    });
  });
  halt.addEventListener('click', () => { if (mic) { mic.ctl.stop(); say('mic-stopping', 'stopping…'); } });
  requestAnimationFrame(paint);
})();
"""

# --- what the web UI's handlers call ---------------------------------------------------------------------------


def preview_for(last: dict) -> str:
    """The preview of the last result (``{"npy", "wav", "fps"}``): writes ``<stem>.face.json`` beside its npy."""
    if not last:
        return empty_preview()
    npy = Path(last["npy"])
    frames = np.load(npy)
    face_json = write_preview_json(npy.with_name(npy.name.split(".")[0] + ".face.json"), frames, float(last["fps"]))
    if len(frames) > 20 * float(last["fps"]):  # the last step of a long request: give its freed memory back
        from motion.face.api import release_memory

        del frames
        release_memory()
    return preview_html(face_json, last["wav"], label=npy.parent.name)


def video_for(last: dict, size: int = 480) -> Path:
    """``<stem>.mp4`` of the last result, beside its files."""
    from bert_vits2.audio import load_audio
    from motion.face.render import render_video

    npy = Path(last["npy"])
    audio, sr = load_audio(last["wav"], sample_rate=None)
    return render_video(np.load(npy), float(last["fps"]), npy.with_name(npy.name.split(".")[0] + ".mp4"),
                        audio=audio, sample_rate=int(sr), size=(size, size))


def take_result(folder: Path, wav: str | os.PathLike, curves: str | os.PathLike,
                fps: float | None = None) -> dict:
    """Copy an uploaded take (audio + ``[T, 61]`` npy or Live Link Face CSV) into ``folder`` as ``take.wav`` /
    ``take.npy`` (covering the audio) and return it as a result (``{"npy", "wav", "fps", "sr"}``)."""
    from bert_vits2.audio import load_audio, write_wav_pcm16
    from bert_vits2.fileio import save_npy_atomic
    from motion.face.render import load_curves
    from motion.frames import num_frames_for, resample_curves

    c = load_curves(curves, fps)
    audio, sr = load_audio(wav, sample_rate=None)
    n = num_frames_for(len(audio) / float(sr), c.fps)
    frames = resample_curves(c.frames, c.fps, c.fps, n) if len(c.frames) != n else c.frames
    paths = {"wav": write_wav_pcm16(folder / "take.wav", audio, int(sr)),
             "npy": save_npy_atomic(folder / "take.npy", np.asarray(frames, np.float32))}
    return {"npy": str(paths["npy"]), "wav": str(paths["wav"]), "fps": float(c.fps), "sr": int(sr)}


__all__ += ["preview_for", "take_result", "video_for"]
