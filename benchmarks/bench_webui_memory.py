"""Peak memory (RSS) of the web UI's largest requests, each in a fresh process, and RSS after many requests.

Each measurement runs in its own subprocess that builds the gradio app exactly as ``webui.py`` does (default limits
of motion/webui/limits.py, the demo voice, the shipped default head), runs a short warm-up request (5 s audio -> face and a
one-word TTS: the lazily loaded libraries join the baseline), records its RSS before the request (the baseline:
torch + gradio + the head + those libraries), runs the handlers a browser request runs, and reports ``VmHWM`` (the peak RSS
of the whole process) and the RSS afterwards:

- ``audio -> face``: the longest upload the defaults allow (``--max-audio-s``, 600 s) as a 48 kHz stereo FLAC
  (under the 50 MB upload limit; it is decoded, mixed and resampled) and as the longest 44.1 kHz mono 16-bit wav
  under 50 MB (566 s); the speech is eSpeak NG sentences (the demo voice) tiled to length;
- ``tts``: the demo voice on the longest text the defaults allow (``--max-chars``, 2000 characters);
- ``repeat``: ``--requests`` alternating requests (a 60 s audio -> face and a demo-voice TTS) in one process, RSS
  after the first and after the last (does memory level off?).

Run:  python benchmarks/bench_webui_memory.py [--quick] [--requests 20] [--threads 2]
``--quick`` uses 120 s audio and 6 requests (a smoke run; the figures to report come from the full run).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SENTENCES = ("The quick brown fox jumps over the lazy dog, and then it runs away into the forest.",
             "Speech that comes with a face is a research toolkit around a text to speech model.",
             "Hello world. How are you today? I am fine, thank you very much for asking.")


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {key} (Linux only)")


def _mib(kib: int) -> float:
    return kib / 1024.0


def make_speech(path: Path, seconds: float, sample_rate: int, channels: int) -> Path:
    """eSpeak NG sentences (the demo voice) tiled to ``seconds``, written as wav (.wav) or FLAC, 16-bit."""
    import numpy as np
    import soundfile as sf
    import soxr

    from motion.demo_voice import DemoVoice

    voice, parts = DemoVoice(), []
    for text in SENTENCES:
        result = voice.synthesize(text, None, "EN")
        parts += [np.asarray(result.audio, np.float32), np.zeros(int(0.4 * result.sample_rate), np.float32)]
    one = soxr.resample(np.concatenate(parts), result.sample_rate, sample_rate).astype(np.float32)
    n = int(seconds * sample_rate)
    mono = np.tile(one, n // len(one) + 1)[:n]
    data = mono if channels == 1 else np.stack([mono] + [np.roll(mono, 300 * c) * 0.8 for c in range(1, channels)], 1)
    sf.write(str(path), data, sample_rate, subtype="PCM_16")
    return path


def _child(args: argparse.Namespace) -> int:
    """One measurement inside a fresh process; prints one JSON line."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import torch

    torch.set_num_threads(args.threads)
    from motion.webui.app import DEMO_LABEL, WebUIConfig, build_app

    tmp = Path(tempfile.mkdtemp(prefix="bv2-mem-"))
    app = build_app(WebUIConfig(model_dir=str(tmp / "none"), bert_dir=str(tmp / "none"), outputs_dir=str(tmp / "out")))
    h, state = app.webui_handlers, app.webui_state
    state.face.default_model()
    text = " ".join(SENTENCES)
    long_text = (text + " ") * (state.limits.max_chars // (len(text) + 1))

    def a2f(path: str) -> None:
        last = h.audio_to_face(path, DEMO_LABEL)[-1]
        h.preview(last)

    def tts(t: str) -> None:
        last = h.tts(DEMO_LABEL, t, None, "EN", 0.2, 0.6, 0.8, 1.0, "", 0.7, False, False, 0.5, 0.2)[-1]
        h.preview(last)

    if args.warm:  # a short request first: lazily loaded libraries (FFT, oneDNN, matplotlib) join the baseline
        a2f(args.warm)
        tts("Hello.")
    warm_peak = _status_kib("VmHWM")
    base = _status_kib("VmRSS")
    t0 = time.perf_counter()
    rss_first = None
    if args.child == "a2f":
        a2f(args.audio)
    elif args.child == "tts":
        tts(long_text[: state.limits.max_chars])
    else:
        for i in range(args.requests):
            if i % 2 == 0:
                a2f(args.audio)
            else:
                tts(text)
            if i == 0:
                rss_first = _status_kib("VmRSS")
    out = {"warm_up_peak_mib": _mib(warm_peak), "baseline_mib": _mib(base), "peak_mib": _mib(_status_kib("VmHWM")), "after_mib": _mib(_status_kib("VmRSS")),
           "seconds": time.perf_counter() - t0}
    if rss_first is not None:
        out["after_first_mib"] = _mib(rss_first)
    print(json.dumps(out))
    return 0


def _run_child(mode: str, args: argparse.Namespace, audio: Path | None = None) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--threads", str(args.threads), "--requests", str(args.requests),
           "--warm", str(args.warm)]
    if audio is not None:
        cmd += ["--audio", str(audio)]
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(REPO))
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise SystemExit(f"bench_webui_memory: the {mode} measurement failed: {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="120 s audio and 6 requests (smoke run)")
    ap.add_argument("--requests", type=int, default=20, help="requests of the repeat measurement")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads in each measured process")
    ap.add_argument("--child", choices=("a2f", "tts", "repeat"), help=argparse.SUPPRESS)
    ap.add_argument("--audio", help=argparse.SUPPRESS)
    ap.add_argument("--warm", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.requests < 1 or args.threads < 1:
        ap.error("--requests and --threads must be at least 1")
    if args.child:
        return _child(args)
    sys.path.insert(0, str(REPO))
    from motion.webui.limits import RequestLimits

    limits = RequestLimits()
    seconds = 120.0 if args.quick else limits.max_audio_s
    if args.quick:
        args.requests = min(args.requests, 6)
    wav_s = min(seconds, int((limits.max_upload_mb * 1e6 - 1000) / (44100 * 2)))
    import platform

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    print(f"CPU: {cpu}, {os.cpu_count()} cores; torch threads {args.threads}; defaults: --max-audio-s "
          f"{limits.max_audio_s:g}, --max-upload-mb {limits.max_upload_mb:g}, --max-chars {limits.max_chars}")
    with tempfile.TemporaryDirectory() as tmp:
        flac = make_speech(Path(tmp) / "speech_48k_stereo.flac", seconds, 48000, 2)
        wav = make_speech(Path(tmp) / "speech_44k_mono.wav", wav_s, 44100, 1)
        medium = make_speech(Path(tmp) / "speech_60s.wav", 60.0, 44100, 1)
        args.warm = make_speech(Path(tmp) / "speech_5s.wav", 5.0, 44100, 1)
        rows = [(f"audio -> face, {seconds:g} s 48 kHz stereo FLAC ({flac.stat().st_size / 1e6:.1f} MB)",
                 _run_child("a2f", args, flac)),
                (f"audio -> face, {wav_s:g} s 44.1 kHz mono wav ({wav.stat().st_size / 1e6:.1f} MB)",
                 _run_child("a2f", args, wav)),
                (f"tts, demo voice, {limits.max_chars} characters", _run_child("tts", args))]
        rep = _run_child("repeat", args, medium)
    for label, r in rows:
        print(f"{label}: peak RSS {r['peak_mib']:.0f} MiB (baseline {r['baseline_mib']:.0f} MiB before the request, "
              f"+{r['peak_mib'] - r['baseline_mib']:.0f}; warm-up peak {r['warm_up_peak_mib']:.0f}), after "
              f"{r['after_mib']:.0f} MiB, {r['seconds']:.1f} s")
    print(f"{args.requests} requests (60 s audio -> face and demo-voice tts, alternating): RSS {rep['baseline_mib']:.0f} "
          f"MiB before, {rep['after_first_mib']:.0f} MiB after the first, {rep['after_mib']:.0f} MiB after the last; "
          f"peak {rep['peak_mib']:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
