"""Server latency, throughput and memory with the full-size Bert-VITS2 v2.3 generator (random weights) on this CPU.

Starts the real ``server_fastapi.py`` (a subprocess on a free 127.0.0.1 port) with a voice folder written here:
the full-size v2.3 generator (benchmarks/bench_synthesis.build_model: 192 hidden, 6 layers, 512-channel HiFi-GAN,
850 speakers) and, for Chinese, a BERT-large-shaped chinese-roberta (24 layers, 1024 hidden, random weights, the tiny
fixture tokenizer; ``--bert tiny`` uses the 2-layer test BERT instead). Then prints:

- time to the first audio chunk and to the whole result, for a 1-sentence and a 5-sentence Chinese text, over the
  WebSocket (audio only, and with faces) and the chunked HTTP stream, plus ``Voice.synthesize`` in-process for the
  batch reference; the ratio first-audio / whole for 5 sentences;
- throughput with 1 / 4 / 16 concurrent clients (``/voice``, 1-sentence text): requests/s and seconds of audio per
  second of wall time;
- the server's RSS after warm-up, after 100 and after ``--requests`` (default 1,000) ``/voice`` requests.

``--ttfa-only`` prints instead, in-process, where the first audio's time goes (text frontend + BERT, encoder +
durations + flow, the first chunk's decode) and the RTF of ``synthesize`` against the stream (and of the decoder
alone, whole piece vs chunked), then the time to first audio over the WebSocket per server precision.

Run:  python benchmarks/bench_server.py [--threads 2] [--repeats 3] [--requests 1000] [--bert full|tiny]
Timings on a shared CPU include other processes' load (the load average is printed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_synthesis import cpu_name  # noqa: E402

ONE = "今天天气很好，我们一起去公园散步吧。"
FIVE = ("今天天气很好，我们一起去公园散步吧。公园里有很多人在跑步。湖边的柳树已经发芽了。"
        "孩子们在草地上放风筝。傍晚的时候我们再回家吃饭。")


def make_voice(folder: Path, ref: Path, bert: str) -> Path:
    import torch
    import transformers
    from bench_synthesis import FULL_V23, build_model

    from bert_vits2.checkpoint import save_checkpoint
    from bert_vits2.text.bert import BERT_MODELS

    folder.mkdir(parents=True, exist_ok=True)
    cfg = json.loads((ref / "config.json").read_text())
    for k in ("inter_channels", "hidden_channels", "filter_channels", "n_heads", "n_layers", "kernel_size",
              "resblock", "resblock_kernel_sizes", "resblock_dilation_sizes", "upsample_rates",
              "upsample_initial_channel", "upsample_kernel_sizes", "gin_channels"):
        cfg["model"][k] = FULL_V23[k]
    cfg["data"]["n_speakers"] = FULL_V23["n_speakers"]
    cfg["data"]["spk2id"] = {f"spk{i}": i for i in range(FULL_V23["n_speakers"])}
    (folder / "config.json").write_text(json.dumps(cfg, indent=1))
    net = build_model(frames_per_phone=6.0)
    save_checkpoint(net, None, None, 1, folder / "G_1.pth")
    src = ref / "bert_tiny_zh"
    dst = folder / "bert" / BERT_MODELS["ZH"].folder_name
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json"):
        (dst / name).write_bytes((src / name).read_bytes())
    vocab = json.loads((src / "config.json").read_text())["vocab_size"]
    if bert == "full":
        conf = transformers.BertConfig(vocab_size=vocab, hidden_size=1024, num_hidden_layers=24,
                                       num_attention_heads=16, intermediate_size=4096, max_position_embeddings=512)
    else:
        conf = transformers.BertConfig(vocab_size=vocab, hidden_size=1024, num_hidden_layers=2, num_attention_heads=4,
                                       intermediate_size=64, max_position_embeddings=512)
    torch.manual_seed(0)
    transformers.BertForMaskedLM(conf).save_pretrained(str(dst))
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(folder: Path, port: int, threads: int, precision: str = "fp32",
                 bert_precision: str = "auto") -> subprocess.Popen:
    import httpx

    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "server_fastapi.py"), "--model-dir", str(folder), "--port", str(port),
         "--workers", "2", "--max-queue", "64", "--max-chars", "2000", "--log-level", "warning",
         "--precision", precision, "--bert-precision", bert_precision, "-y", str(folder / "none.yml")], env=env, cwd=str(ROOT))
    t0 = time.time()
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/status", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if time.time() - t0 > 600:
            proc.kill()
            raise SystemExit("the server did not start within 600 s")
        time.sleep(0.5)


async def ws_once(url: str, text: str, face: bool, seed: int = 1) -> tuple[float, float, float]:
    """(first audio chunk s, whole result s, audio seconds) over the WebSocket."""
    import websockets

    t0 = time.perf_counter()
    first = None
    samples = sr = 0
    async with websockets.connect(url, max_size=None) as ws:
        await ws.send(json.dumps({"text": text, "speaker_id": 0, "auto_split": True, "face": face, "seed": seed,
                                  "language": "ZH"}))
        while True:
            m = await ws.recv()
            if isinstance(m, bytes):
                if first is None:
                    first = time.perf_counter() - t0
                samples += len(m) // 2
                continue
            msg = json.loads(m)
            if msg["type"] == "start":
                sr = msg["sample_rate"]
            if msg["type"] == "error":
                raise SystemExit(f"server error: {msg}")
            if msg["type"] == "end":
                return first, time.perf_counter() - t0, samples / sr


CLAUSE = "今天天气很好，我们走。"  # a first clause of about 10 characters
CLAUSES = ["今天天气很好，我们走。", "明天下雨，别出门了。", "你吃饭了吗？我饿了。", "快点过来，要开始了。", "这个问题很简单。",
           "我们下午三点见面。", "他已经回家了吧？", "谢谢你的帮助！", "请稍等一下，马上好。", "天黑了，快回去。"]
SENTENCE = "今天天气很好，我们一起去公园散步吧，湖边的柳树已经发芽了。"  # a first sentence of about 30
#: sentences of varied lengths for the real-time factors: a new length makes oneDNN build new primitives for every
#: convolution (0.5-0.65 ms each here), which one repeated text would hide
VARIED = ["今天天气很好，我们一起去公园散步吧，湖边的柳树已经发芽了。", "我明天要去北京开会，大概下周三回来。",
          "这本书我已经看了三遍，每次都有新的体会和收获。", "你好！", "请把窗户打开，房间里太闷了，我们需要一点新鲜空气。",
          "他说他会晚一点到，让我们先吃饭，不用等他。"]


async def ws_text_stream_once(url: str, text: str, face: bool, token_chars: int = 2) -> float:
    """Seconds from the last token of the first sentence to the first audio, text streamed in token by token (as a
    chatbot sends it); the rest of the text follows once audio has started."""
    import websockets

    async with websockets.connect(url, max_size=None) as ws:
        await ws.send(json.dumps({"text_stream": True, "speaker_id": 0, "face": face, "seed": 1, "language": "ZH"}))
        first_end = next(i for i, ch in enumerate(text) if ch in "。！？") + 1
        for i in range(0, first_end, token_chars):
            await ws.send(json.dumps({"type": "text", "text": text[i:min(i + token_chars, first_end)]}))
        t0 = time.perf_counter()
        while not isinstance(await ws.recv(), bytes):
            pass
        first = time.perf_counter() - t0
        await ws.send(json.dumps({"type": "text", "text": text[first_end:]}))
        await ws.send(json.dumps({"type": "end_text"}))
        while True:
            m = await ws.recv()
            if isinstance(m, str) and json.loads(m)["type"] in ("end", "error"):
                return first


def ttfa(folder: Path, threads: int, repeats: int, precisions: list[str]) -> None:
    """Time to first audio, warm: a ~10-character first clause and a ~30-character first sentence, with and without
    faces, per server precision (one text repeated: its lengths' oneDNN primitives are built); ten different clauses
    (new lengths, as users send them); and text streamed in token by token.

    One server per precision, all running, and their requests interleaved in a rotating order (one request at a
    time): this VM's speed drifts by 30 % within minutes, and servers measured one after the other compared phases of
    the machine as much as precisions."""
    print("\n== time to first audio (WebSocket, warm, median of %d, precisions interleaved) ==" % repeats)
    servers, urls = [], {}
    try:
        for precision in precisions:  # "fp32", "auto", or "fp32:int8" (generator fp32, BERT int8)
            port = free_port()
            servers.append(start_server(folder, port, threads, *precision.split(":", 1)))
            urls[precision] = f"ws://127.0.0.1:{port}/ws/voice"
        for url in urls.values():
            for _ in range(2):
                asyncio.run(ws_once(url, SENTENCE, True))  # warm-up (two lengths)
                asyncio.run(ws_once(url, CLAUSE, False))

        def interleaved(calls: list) -> dict[str, list]:
            """Every call once per precision, the precisions' order rotating from call to call."""
            got: dict[str, list] = {p: [] for p in precisions}
            for k, call in enumerate(calls):
                for j in range(len(precisions)):
                    p = precisions[(k + j) % len(precisions)]
                    got[p].append(call(urls[p]))
            return got

        rows: list[tuple[str, str, bool, dict[str, list]]] = []
        for name, text in (("clause (10 chars)", CLAUSE), ("sentence (30 chars)", SENTENCE)):
            for face in (False, True):
                calls = [lambda u, t=text, f=face: asyncio.run(ws_once(u, t, f)) for _ in range(repeats)]
                rows.append(("single", name, face, interleaved(calls)))
        for face in (False, True):  # as users send them: a different clause (and length) every request
            calls = [lambda u, t=text, f=face, s=100 * r + i: asyncio.run(ws_once(u, t, f, seed=s))
                     for r in range(repeats) for i, text in enumerate(CLAUSES)]
            rows.append(("varied", "10 clauses, varied", face, interleaved(calls)))
        for face in (False, True):
            calls = [lambda u, f=face: asyncio.run(ws_text_stream_once(u, CLAUSE + SENTENCE, f))
                     for _ in range(repeats)]
            rows.append(("streamed", "streamed text, 1st", face, interleaved(calls)))
    finally:
        for proc in servers:
            proc.terminate()
        for proc in servers:
            proc.wait(30)
    print(f"{'precision':<10} {'first piece':<22} {'faces':<6} {'first audio':>12} {'whole':>9}")
    for precision in precisions:
        for kind, name, face, got in rows:
            r, on = got[precision], "on" if face else "off"
            if kind == "streamed":
                print(f"{precision:<10} {name:<22} {on:<6} {med(r):>10.3f} s (from the first sentence's last token)")
                continue
            line = f"{precision:<10} {name:<22} {on:<6} {med([x[0] for x in r]):>10.3f} s {med([x[1] for x in r]):>7.3f} s"
            if kind == "varied":
                line += f" (slowest first audio {max(x[0] for x in r):.3f} s)"
            print(line, flush=True)


def stream_first_chunk_s(v, text: str, seed: int) -> float:
    """Seconds from ``Voice.stream`` to its first chunk (the rest of the stream is closed unread)."""
    t0 = time.perf_counter()
    stream = v.stream(text, "spk0", "ZH", split_sentences=True, seed=seed)
    next(iter(stream))
    first = time.perf_counter() - t0
    stream.close()
    return first


def in_process(folder: Path, threads: int, repeats: int) -> None:
    """In-process, fp32, the same voice: where the first audio's time goes (text frontend + BERT, the generator up to
    z, the first chunk's decode), the first chunk over ten different clauses, and the real-time factors
    (:func:`rtf_of_streams`)."""
    import numpy as np
    import torch

    from bert_vits2.request import SynthesisRequest
    from bert_vits2.streaming import StreamOptions, decode_chunk
    from bert_vits2.synthesis import Voice, find_model_files, plan_slices

    torch.set_num_threads(threads)
    v = Voice.load(find_model_files(folder))
    opts, ctx = StreamOptions(), v.model.dec.context
    print(f"\n== in-process, fp32, {threads} threads (median of {repeats}, warm) ==")
    for name, text, bert_precision in (("clause", CLAUSE, "fp32"), ("sentence", SENTENCE, "fp32"),
                                       ("clause, int8 BERT", CLAUSE, "int8")):
        v.bert_precision = bert_precision  # what Voice.load(bert_precision=...) sets
        req = SynthesisRequest.of(text, "spk0", "ZH", seed=1)
        call = plan_slices(text, "ZH")[0]
        rows = []
        for _ in range(repeats + 1):
            timings: dict[str, float] = {}
            c0 = time.process_time()
            part = v._infer_slice(call, 0, req, v._generators(1), timings, decode=False)[0]
            c1, t0 = time.process_time(), time.perf_counter()
            decode_chunk(v.model.dec, part.latent, part.g, 0, min(opts.first_chunk_frames, part.latent.shape[-1]),
                         v.hop, ctx)
            rows.append((timings["text_inputs"], timings["synthesis"], time.perf_counter() - t0, c1 - c0,
                         time.process_time() - c1))
        t_text, t_gen, t_dec, c_inputs, c_dec = (med([r[i] for r in rows[1:]]) for i in range(5))
        print(f"{name:<9} first audio in parts: text frontend + BERT {t_text:.3f} s, encoder + durations + flow "
              f"(whole piece, {part.latent.shape[-1]} z frames) {t_gen:.3f} s, first chunk decode "
              f"({opts.first_chunk_frames} frames + context) {t_dec:.3f} s = {t_text + t_gen + t_dec:.3f} s wall; "
              f"process CPU {c_inputs:.3f} s up to z, {c_dec:.3f} s decode", flush=True)
        # the same first audio through the public API (what the server calls)
        firsts = [stream_first_chunk_s(v, text, seed=1) for _ in range(repeats + 1)]
        print(f"{name:<9} Voice.stream's first chunk: {med(firsts[1:]):.3f} s wall (the parts above: "
              f"{t_text + t_gen + t_dec:.3f} s; the WebSocket table's difference to this is the server path)",
              flush=True)
    v.bert_precision = "fp32"
    firsts = [stream_first_chunk_s(v, text, seed=100 * r + i)  # as users send them: a new text (and length) each
              for r in range(repeats + 1) for i, text in enumerate(CLAUSES)][len(CLAUSES):]  # round 0: warm-up
    print(f"clauses   Voice.stream's first chunk over {len(CLAUSES)} different clauses of 7-10 characters, fp32: "
          f"median {med(firsts):.3f} s, slowest {max(firsts):.3f} s", flush=True)
    outs = {}
    for bert_precision in ("fp32", "int8"):  # what the int8 BERT costs in accuracy, on this (random) BERT
        v.bert_precision = bert_precision
        outs[bert_precision] = v.synthesize(SENTENCE, "spk0", "ZH", split_sentences=True, seed=1).audio
    a, b = outs["fp32"], outs["int8"]
    if len(a) == len(b):
        snr = 10 * np.log10(float(np.sum(a * a)) / max(1e-20, float(np.sum((a - b) ** 2))))
        print(f"int8 BERT vs fp32, the 30-char sentence: same length ({len(a)} samples), audio SNR {snr:.1f} dB",
              flush=True)
    else:
        print(f"int8 BERT vs fp32, the 30-char sentence: lengths differ ({len(b)} vs {len(a)} samples: the durations "
              "moved)", flush=True)
    v.bert_precision = "fp32"
    rtf_of_streams(v, repeats)
    del v


def rtf_of_streams(v, repeats: int) -> None:
    """Real-time factor of whole-utterance synthesis against the stream, whole request and decoder alone, over
    requests of varied lengths (one sentence each, then three at a time), interleaved (the machine's speed drifts):
    ``synthesize`` (the decoder on whole pieces), ``stream`` (the default: incremental decoder, :func:`chunk_spans`'
    sizes), ``paced`` (``StreamOptions(pace=True)``) and ``windowed`` (each chunk with its context, as before the
    incremental decoder). The variants take turns in a rotating order: a chunk length one variant met first would find its
    oneDNN primitives built for the next."""
    from bert_vits2.streaming import StreamOptions

    clock = {"t0": 0.0, "sum": 0.0}  # the whole-piece decoder calls inside synthesize, timed by hooks
    hooks = [v.model.dec.register_forward_pre_hook(lambda m, a: clock.update(t0=time.perf_counter())),
             v.model.dec.register_forward_hook(
                 lambda m, a, o: clock.update(sum=clock["sum"] + time.perf_counter() - clock["t0"]))]
    variants = {"synthesize": None, "stream": StreamOptions(), "paced": StreamOptions(pace=True),
                "windowed": StreamOptions(context_frames=v.model.dec.context, pace=False)}
    groups = {"1 sentence": VARIED, "3 sentences": ["".join(VARIED[i:i + 3]) for i in (0, 1, 3)]}
    try:
        for group, texts in groups.items():
            rows = {k: [] for k in variants}  # (wall RTF, decoder RTF) per request
            for r in range(repeats + 1):
                for t, text in enumerate(texts):
                    order = list(variants.items())
                    for name, options in order[(r + t) % len(order):] + order[:(r + t) % len(order)]:
                        clock["sum"] = 0.0
                        t0 = time.perf_counter()
                        if options is None:
                            res = v.synthesize(text, "spk0", "ZH", split_sentences=True, seed=r)
                            decode, seconds = clock["sum"], res.duration_s
                        else:
                            chunks = list(v.stream(text, "spk0", "ZH", split_sentences=True, seed=r, options=options))
                            decode = sum(c.timings.get("decode_s", 0.0) for c in chunks)
                            seconds = sum(len(c.audio) for c in chunks) / v.sample_rate
                        if r:  # round 0: warm-up (each round's seed gives new lengths)
                            rows[name].append(((time.perf_counter() - t0) / seconds, decode / seconds))
            base = rows["synthesize"]
            parts = []
            for name, xs in rows.items():
                ratio = med([x[1] / b[1] for x, b in zip(xs, base)])
                parts.append(f"{name} {med([x[0] for x in xs]):.3f} (decoder {med([x[1] for x in xs]):.3f}, "
                             f"{ratio:.2f}x whole)")
            print(f"RTF, {group}, {len(texts)} texts x {repeats} (median): " + "; ".join(parts), flush=True)
    finally:
        for h in hooks:
            h.remove()


def http_stream_once(base: str, text: str) -> tuple[float, float]:
    import httpx

    t0 = time.perf_counter()
    first = None
    with httpx.stream("GET", base + "/voice/stream", params={"text": text, "speaker_id": 0, "auto_split": "true",
                                                             "format": "pcm", "seed": 1}, timeout=600) as r:
        for _ in r.iter_bytes():
            if first is None:
                first = time.perf_counter() - t0
    return first, time.perf_counter() - t0


def voice_once(client, base: str, text: str) -> float:
    r = client.get(base + "/voice", params={"text": text, "speaker_id": 0, "auto_split": "true", "seed": 1},
                   timeout=600)
    if r.status_code != 200:
        raise SystemExit(f"/voice failed: {r.status_code} {r.text[:200]}")
    return (len(r.content) - 44) / 2 / 44100


def med(xs):
    return statistics.median(xs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the server (OMP_NUM_THREADS)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--requests", type=int, default=1000, help="requests for the memory check")
    ap.add_argument("--per-client", type=int, default=2, help="requests per client in the throughput runs")
    ap.add_argument("--bert", choices=("full", "tiny"), default="full")
    ap.add_argument("--ref", default=str(ROOT.parent / "shared" / "reference" / "bv2"))
    ap.add_argument("--skip-batch", action="store_true", help="skip the in-process Voice.synthesize reference")
    ap.add_argument("--ttfa-only", action="store_true", help="only the time-to-first-audio table (fp32 and auto)")
    ap.add_argument("--skip-in-process", action="store_true",
                    help="with --ttfa-only: only the WebSocket table (no in-process parts and real-time factors)")
    ap.add_argument("--skip-websocket", action="store_true",
                    help="with --ttfa-only: only the in-process parts and real-time factors (no servers)")
    ap.add_argument("--precisions", default="fp32,auto,fp32:int8",
                    help="server precisions for the time-to-first-audio table; PRECISION:BERT_PRECISION sets the "
                         "BERT's too (fp32:int8 = --precision fp32 --bert-precision int8)")
    args = ap.parse_args()

    import httpx

    tmp = Path(tempfile.mkdtemp(prefix="bench_server_"))
    t = time.time()
    folder = make_voice(tmp / "voice", Path(args.ref), args.bert)
    print(f"voice folder written in {time.time() - t:.1f} s (BERT: {args.bert})", flush=True)
    print(f"CPU: {cpu_name()}, {args.threads} threads, load average {os.getloadavg()[0]:.1f}", flush=True)
    if args.ttfa_only:
        if not args.skip_in_process:
            in_process(folder, args.threads, args.repeats)
        if not args.skip_websocket:
            ttfa(folder, args.threads, args.repeats, args.precisions.split(","))
        shutil.rmtree(tmp, ignore_errors=True)
        return

    batch = {}
    if not args.skip_batch:
        import torch

        from bert_vits2.synthesis import Voice, find_model_files

        torch.set_num_threads(args.threads)
        v = Voice.load(find_model_files(folder))
        v.synthesize(ONE, "spk0", "ZH", split_sentences=True, seed=1)  # warm
        for name, text in (("1 sentence", ONE), ("5 sentences", FIVE)):
            times, firsts = [], []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                res = v.synthesize(text, "spk0", "ZH", split_sentences=True, seed=1)
                times.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                gen = v.stream(text, "spk0", "ZH", split_sentences=True, seed=1)
                next(gen)
                firsts.append(time.perf_counter() - t0)
                gen.close()
            batch[name] = (med(times), med(firsts), res.duration_s)
            print(f"in-process {name}: synthesize {med(times):.3f} s for {res.duration_s:.2f} s of audio; "
                  f"Voice.stream first chunk {med(firsts):.3f} s", flush=True)
        del v

    port = free_port()
    base, ws = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/ws/voice"
    t = time.time()
    proc = start_server(folder, port, args.threads)
    print(f"server up in {time.time() - t:.1f} s", flush=True)
    try:
        with httpx.Client() as client:
            voice_once(client, base, ONE)  # warm-up
            asyncio.run(ws_once(ws, ONE, True))
            rss_warm = httpx.get(base + "/status").json()["rss_mb"]
            print("\n== latency (median of %d, warm) ==" % args.repeats)
            print(f"{'text':<12} {'path':<26} {'first audio':>12} {'whole':>9} {'first/whole':>12} {'audio s':>8}")
            for name, text in (("1 sentence", ONE), ("5 sentences", FIVE)):
                for label, face in (("WebSocket, audio only", False), ("WebSocket, audio + face", True)):
                    rows = [asyncio.run(ws_once(ws, text, face)) for _ in range(args.repeats)]
                    f, w, a = med([r[0] for r in rows]), med([r[1] for r in rows]), rows[0][2]
                    print(f"{name:<12} {label:<26} {f:>10.3f} s {w:>7.3f} s {f / w:>11.0%} {a:>8.2f}", flush=True)
                rows = [http_stream_once(base, text) for _ in range(args.repeats)]
                f, w = med([r[0] for r in rows]), med([r[1] for r in rows])
                print(f"{name:<12} {'HTTP /voice/stream':<26} {f:>10.3f} s {w:>7.3f} s {f / w:>11.0%}", flush=True)
                times = []
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    voice_once(client, base, text)
                    times.append(time.perf_counter() - t0)
                print(f"{name:<12} {'HTTP /voice (whole wav)':<26} {'':>12} {med(times):>7.3f} s", flush=True)

            print("\n== throughput (/voice, 1 sentence, %d requests per client) ==" % args.per_client)
            for clients in (1, 4, 16):
                def one_client(_i):
                    with httpx.Client() as c:
                        return sum(voice_once(c, base, ONE) for _ in range(args.per_client))
                t0 = time.perf_counter()
                with ThreadPoolExecutor(clients) as ex:
                    audio_s = sum(ex.map(one_client, range(clients)))
                wall = time.perf_counter() - t0
                n = clients * args.per_client
                print(f"{clients:>2} clients: {n} requests in {wall:.1f} s = {n / wall:.2f} req/s, "
                      f"{audio_s / wall:.2f} s of audio per s (RTF {wall / audio_s:.2f})", flush=True)

            print(f"\n== memory over {args.requests} /voice requests (text '你好。', 4 clients) ==")
            st0 = httpx.get(base + "/status").json()
            print(f"RSS after warm-up: {rss_warm:.1f} MiB; before the run: {st0['rss_mb']:.1f} MiB")
            done = 0
            marks = {}
            t0 = time.perf_counter()
            with ThreadPoolExecutor(4) as ex:
                def req(_i):
                    with httpx.Client() as c:
                        voice_once(c, base, "你好。")
                step = 100
                while done < args.requests:
                    n = min(step, args.requests - done)
                    list(ex.map(req, range(n)))
                    done += n
                    marks[done] = httpx.get(base + "/status").json()["rss_mb"]
                    print(f"  after {done:>5} requests: RSS {marks[done]:.1f} MiB", flush=True)
            wall = time.perf_counter() - t0
            first = marks[min(marks)]
            last = marks[max(marks)]
            print(f"RSS after {done} requests: {last:.1f} MiB (after the first {min(marks)}: {first:.1f} MiB, "
                  f"growth {last - first:+.1f} MiB; {done / wall:.1f} req/s)")
            q = httpx.get(base + "/status").json()["queue"]
            print(f"queue counters: {q}")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)  # the voice folder (1.3 GB with the full-size BERT)
    print(f"\nload average: {os.getloadavg()}; cpu count {os.cpu_count()}; threads {args.threads}")
    if batch:
        f5 = batch["5 sentences"]
        print(f"in-process 5 sentences: first chunk / synthesize = {f5[1] / f5[0]:.0%}")


if __name__ == "__main__":
    main()
