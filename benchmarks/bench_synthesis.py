"""CPU synthesis speed of the full-size Bert-VITS2 v2.3 generator (random weights): reference path vs fast paths.

One run prints, for each input length (default 50 and 200 phone ids):
  - ``reference``: as upstream runs it (weight norm active, plain fp32 modules);
  - ``fp32 plain``: weight norm folded (what load_model_for_inference(fast=False) gives);
  - ``fp32 fast`` / ``bf16 fast``: bert_vits2.inference.optimize_for_inference (channels-last decoder; bf16 decoder + flow);
  - ``bf16 plain``: the debugging variant (autocast on the plain decoder);
  - ``onnxruntime`` (--onnx): the six exported graphs chained (noise-free run, compared with a noise-free fp32 run);
with wall time, RTF (time / audio seconds, lower is better), speed-up over ``reference``, audio SNR against
``reference`` (same seed, same noise), whether the durations are identical, and the peak RSS while it ran.
--bert adds the three full-size BERTs (random weights from their architecture configs, nothing is downloaded):
time per sentence in fp32 / bf16 / int8 (dynamic quantisation), feature SNR, batched vs one-by-one, and the effect of
the bf16/int8 features on the synthesised audio. GEMM throughput (2048^2 fp32 and bf16) is printed as the bound.

Run:  python benchmarks/bench_synthesis.py [--threads 2] [--repeats 2] [--phones 50 200] [--onnx] [--bert]
      python benchmarks/bench_synthesis.py --no-synthesis --patterns [--voice] [--distinct 10]
--patterns times the generator on the two request patterns of issue 26 (one input repeated; a warm-up on two lengths,
then distinct lengths, each path once per request, interleaved): RTF and the ratio to upstream's fp32 path in the
same run, for the fast fp32 path (unbucketed, the default), the same with bucketed lengths, and bf16 (bucketed).
--voice does the same end to end through Voice.synthesize and Voice.stream (text frontend, BERT-large-shaped random
BERT, synthesis).
Random weights get the perturbation the reference fixtures use (non-zero flow/SDP output layers, LayerNorm gains),
so every stage matters for the SNR; dp.proj.bias is set to log(--frames-per-phone) for speech-like lengths.
Wall times on a shared CPU include contention from other processes: the load average is printed at the end.
"""

from __future__ import annotations

import argparse
import copy
import logging
import math
import tempfile
import threading
import time
import warnings
from pathlib import Path

import torch

from bert_vits2.inference import _cpu_has_native_bf16, optimize_for_inference, remove_weight_norm_
from bert_vits2.models import SynthesizerTrn

# Released v2.3 config (spec section 1): 850 speakers, gin 512.
FULL_V23 = dict(
    n_vocab=112, spec_channels=1025, segment_size=32, inter_channels=192, hidden_channels=192, filter_channels=768,
    n_heads=2, n_layers=6, kernel_size=3, p_dropout=0.1, resblock="1", resblock_kernel_sizes=[3, 7, 11],
    resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5], [1, 3, 5]], upsample_rates=[8, 8, 2, 2, 2],
    upsample_initial_channel=512, upsample_kernel_sizes=[16, 16, 8, 2, 2], n_speakers=850, gin_channels=512,
    use_spk_conditioned_encoder=True, use_noise_scaled_mas=True,
)
SAMPLING_RATE = 44100
HOP = 512


# ------------------------------------------------------------------------------------------------ helpers


class PeakRSS:
    """Peak resident memory (MiB) of this process while the ``with`` block runs (sampled every 2 ms)."""

    def __init__(self) -> None:
        self.peak = 0.0
        self._stop = threading.Event()

    @staticmethod
    def now() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 / 2**20

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.now())
            time.sleep(0.002)

    def __enter__(self) -> "PeakRSS":
        self.peak = self.now()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self.now())


def cpu_name() -> str:
    """The CPU's model name (every benchmark prints it with its figures)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "unknown")
    except OSError:
        return "unknown"


def snr_db(ref: torch.Tensor, x: torch.Tensor) -> float:
    ref, x = ref.double().flatten(), x.double().flatten()
    if ref.shape != x.shape:
        return float("nan")
    noise = (ref - x).pow(2).sum().item()
    return math.inf if noise == 0 else 10 * math.log10(ref.pow(2).sum().item() / noise)


def gemm_gflops(dtype: torch.dtype, n: int = 2048) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = math.inf
    for _ in range(3):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def make_inputs(n_phones: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(1, 112, (1, n_phones), generator=gen)
    x[:, ::2] = 0  # add_blank layout
    tone = torch.randint(0, 12, (1, n_phones), generator=gen) * (x > 0)
    language = torch.zeros(1, n_phones, dtype=torch.long)
    bert = torch.randn(1, 1024, n_phones, generator=gen)
    ja_bert = torch.randn(1, 1024, n_phones, generator=gen)
    en_bert = torch.randn(1, 1024, n_phones, generator=gen)
    return x, torch.tensor([n_phones]), torch.tensor([0]), tone, language, bert, ja_bert, en_bert


def build_model(frames_per_phone: float) -> SynthesizerTrn:
    """Full-size random G with weight norm active, perturbed like the reference fixtures (see their README)."""
    torch.manual_seed(0)
    net = SynthesizerTrn(**FULL_V23).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("weight_g"):
                lo, hi = (1.3, 2.2) if name.startswith("dec.") else (0.6, 1.4)
                p.mul_(lo + (hi - lo) * torch.rand(p.shape, generator=gen))
            elif name.endswith(".gamma"):
                p.copy_(1 + 0.15 * torch.randn(p.shape, generator=gen))
            elif name.endswith(".beta"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
        for flow in net.flow.flows:
            if hasattr(flow, "post"):
                flow.post.weight.normal_(0, 0.05, generator=gen)
                flow.post.bias.normal_(0, 0.05, generator=gen)
        for flows in (net.sdp.flows, net.sdp.post_flows):
            for f in flows:
                if hasattr(f, "proj"):
                    f.proj.weight.normal_(0, 0.15, generator=gen)
                    f.proj.bias.normal_(0, 0.15, generator=gen)
                if hasattr(f, "logs"):
                    f.m.normal_(0, 0.2, generator=gen)
                    f.logs.normal_(0, 0.2, generator=gen)
        net.dp.proj.bias.fill_(math.log(frames_per_phone - 0.5))
    return net


def time_infer(net, inputs, repeats: int, **kw) -> tuple[float, tuple, float, float]:
    """Best wall time of ``net.infer`` (seed 1 before each run), its last output, the peak RSS (MiB) and the best
    process CPU time (all threads; less sensitive than wall time to other processes on a shared CPU)."""
    best, best_cpu, out = math.inf, math.inf, None
    with PeakRSS() as mem:
        for _ in range(repeats):
            torch.manual_seed(1)
            t0, c0 = time.perf_counter(), time.process_time()
            out = net.infer(*inputs, **kw)
            best = min(best, time.perf_counter() - t0)
            best_cpu = min(best_cpu, time.process_time() - c0)
    return best, out, mem.peak, best_cpu


def time_round_robin(paths: dict, inputs, repeats: int, **kw) -> dict[str, tuple]:
    """:func:`time_infer` of every path, interleaved (path A, B, C, A, B, C, ...) so that load from other processes
    hits all paths alike; per path the best of ``repeats``."""
    rows: dict[str, tuple] = {}
    for _ in range(repeats):
        for name, net in paths.items():
            t, out, peak, cpu = time_infer(net, inputs, 1, **kw)
            if name in rows:
                t0, _o, p0, c0 = rows[name]
                t, peak, cpu = min(t, t0), max(peak, p0), min(cpu, c0)
            rows[name] = (t, out, peak, cpu)
    return rows


# ---------------------------------------------------------------------------------------------- synthesis


def bench_synthesis(args) -> None:
    reference = build_model(args.frames_per_phone)  # weight norm active: upstream's inference path
    plain = remove_weight_norm_(build_model(args.frames_per_phone))  # same seeds: same weights, folded
    paths = {
        "reference": reference,
        "fp32 plain": plain,
        "fp32 fast": optimize_for_inference(copy.deepcopy(plain), "fp32"),
        "bf16 fast": optimize_for_inference(copy.deepcopy(plain), "bf16"),
        "bf16 plain": optimize_for_inference(copy.deepcopy(plain), "bf16", fast=False),
    }
    n_params = sum(p.numel() for p in reference.parameters())
    print(f"full-size v2.3 G: {n_params / 1e6:.2f} M params; RSS with {len(paths)} copies {PeakRSS.now():.0f} MiB")
    sessions = None
    if args.onnx:
        from bert_vits2.onnx_export import export_onnx, load_sessions

        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="bv2-bench-onnx-") as tmp:  # sessions keep the graphs in memory
            sessions = load_sessions(export_onnx(plain, tmp, "bench"), threads=args.threads)
        print(f"ONNX export + session load {time.perf_counter() - t0:.1f} s")

    kw = dict(sdp_ratio=0.5, noise_scale=0.667, noise_scale_w=0.8)
    with torch.inference_mode():
        for net in paths.values():  # warm-up (allocator, oneDNN primitive caches)
            time_infer(net, make_inputs(20), 1, **kw)
        for n in args.phones:
            inputs = make_inputs(n)
            rows = time_round_robin(paths, inputs, args.repeats, **kw)
            ref_t, ref_out, _, ref_cpu = rows["reference"]
            audio_s = ref_out[0].shape[-1] / SAMPLING_RATE
            print(f"\n{n} phones -> {ref_out[0].shape[-1] // HOP} frames, {audio_s:.2f} s audio "
                  f"(best of {args.repeats}, {torch.get_num_threads()} threads)")
            print(f"  {'path':<12s} {'wall s':>7s} {'RTF':>6s} {'speed-up':>8s} {'CPU s':>7s} {'CPU x':>6s} "
                  f"{'SNR dB':>7s} {'durations':>9s} {'peak RSS MiB':>12s}")
            for name, (t, out, peak, cpu) in rows.items():
                same = torch.equal(out[1], ref_out[1])
                print(f"  {name:<12s} {t:7.3f} {t / audio_s:6.3f} {ref_t / t:7.2f}x {cpu:7.3f} {ref_cpu / cpu:5.2f}x "
                      f"{snr_db(ref_out[0], out[0]):7.1f} {'same' if same else 'DIFFER':>9s} {peak:12.0f}")
            if sessions is not None:
                from bert_vits2.onnx_export import time_onnx

                x, _, sid, tone, lang, bert, ja, en = inputs
                feed = dict(x=x[0].numpy(), tone=tone[0].numpy(), language=lang[0].numpy(), bert=bert[0].numpy(),
                            ja_bert=ja[0].numpy(), en_bert=en[0].numpy(), sid=int(sid[0]), sdp_ratio=0.5,
                            noise_scale=0.667)
                from bert_vits2.onnx_export import run_onnx_inference

                nf = dict(sdp_ratio=0.5, noise_scale=0.0, noise_scale_w=0.0)
                t_nf, o_nf, _, _ = time_infer(paths["fp32 fast"], inputs, args.repeats, **nf)
                with PeakRSS() as mem:
                    c0 = time.process_time()
                    t_ort = time_onnx(sessions, feed, repeats=args.repeats)
                    c_ort = (time.process_time() - c0) / (args.repeats + 1)
                o_ort = torch.from_numpy(run_onnx_inference(sessions, **feed)["o"])
                a_s = o_nf[0].shape[-1] / SAMPLING_RATE
                print(f"  {'onnxruntime':<12s} {t_ort:7.3f} {t_ort / a_s:6.3f} {ref_t / t_ort:7.2f}x {c_ort:7.3f} "
                      f"{ref_cpu / c_ort:5.2f}x {snr_db(o_nf[0], o_ort):7.1f} {'no noise':>9s} {mem.peak:12.0f}"
                      f"   (noise-free torch fp32 fast right before: {t_nf:.3f} s; ort CPU s = mean)")


# ------------------------------------------------------------------------------------------------ BERT


def _bert_configs():
    import transformers

    common = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)
    deberta = dict(relative_attention=True, position_buckets=256, norm_rel_ebd="layer_norm", share_att_key=True,
                   pos_att_type=["p2c", "c2p"], max_relative_positions=-1, position_biased_input=False,
                   layer_norm_eps=1e-7, **common)
    return {
        "ZH chinese-roberta-wwm-ext-large (BERT-large)": (
            transformers.BertForMaskedLM, transformers.BertConfig(vocab_size=21128, **common)),
        "JP deberta-v2-large-japanese-char-wwm": (
            transformers.DebertaV2ForMaskedLM, transformers.DebertaV2Config(vocab_size=22012, **deberta)),
        "EN deberta-v3-large": (
            transformers.DebertaV2Model, transformers.DebertaV2Config(vocab_size=128100, type_vocab_size=0, **deberta)),
    }


def _bert_time(model, ids: torch.Tensor, mask: torch.Tensor, repeats: int) -> tuple[float, torch.Tensor]:
    best, out = math.inf, None
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-3].float()
        best = min(best, time.perf_counter() - t0)
    return best, out


def bench_bert(args) -> None:
    import transformers

    from bert_vits2.text.bert import apply_bert_precision

    transformers.logging.set_verbosity_error()
    n_tok, batch = args.bert_tokens, 4
    synth = optimize_for_inference(remove_weight_norm_(build_model(args.frames_per_phone)), "fp32")
    print(f"\nBERT: random full-size models, {n_tok} tokens per sentence, best of {args.repeats} "
          f"(+1 warm-up), {torch.get_num_threads()} threads")
    for label, (cls, cfg) in _bert_configs().items():
        torch.manual_seed(0)
        t0 = time.perf_counter()
        model = cls(cfg).eval()
        model.requires_grad_(False)
        n_params = sum(p.numel() for p in model.parameters())
        print(f"\n  {label}: {n_params / 1e6:.0f} M params (built in {time.perf_counter() - t0:.1f} s)")
        gen = torch.Generator().manual_seed(0)
        ids = torch.randint(5, cfg.vocab_size, (batch, n_tok), generator=gen)
        mask = torch.ones_like(ids)
        one_ids, one_mask = ids[:1], mask[:1]
        feats = {}
        with torch.inference_mode():
            t_fp32, ref = _bert_time(model, one_ids, one_mask, args.repeats)
            feats["fp32"] = ref
            t_batch, _ = _bert_time(model, ids, mask, args.repeats)
            print(f"    fp32 one sentence {t_fp32 * 1e3:7.1f} ms;  batch of {batch}: {t_batch * 1e3:7.1f} ms "
                  f"= {t_batch / batch * 1e3:.1f} ms/sentence ({t_fp32 * batch / t_batch:.2f}x vs one by one)")
            for precision in ("bf16", "int8"):
                m = apply_bert_precision(copy.deepcopy(model), precision)
                with PeakRSS() as mem:
                    t, out = _bert_time(m, one_ids, one_mask, args.repeats)
                feats[precision] = out
                print(f"    {precision} one sentence {t * 1e3:7.1f} ms ({t_fp32 / t:.2f}x fp32), feature SNR "
                      f"{snr_db(ref, out):5.1f} dB, max abs err {(ref - out).abs().max().item():.3f} "
                      f"(RSS during {mem.peak:.0f} MiB)")
                del m
            # effect on audio: 2 phones per token into the ZH/JP/EN BERT slot of the full-size fp32 synthesizer
            slot = {"ZH": 5, "JP": 6, "EN": 7}[label[:2]]
            inputs = list(make_inputs(2 * n_tok))
            outs = {}
            for precision, f in feats.items():
                phone_feat = torch.repeat_interleave(f[0], 2, dim=0).T[None].contiguous()
                scale = inputs[slot].std() / phone_feat.std()  # random BERT output scale -> the inputs' scale
                inputs[slot] = phone_feat * scale
                torch.manual_seed(1)
                outs[precision] = synth.infer(*inputs, sdp_ratio=0.5, noise_scale=0.667, noise_scale_w=0.8)
            for precision in ("bf16", "int8"):
                same = torch.equal(outs[precision][1], outs["fp32"][1])
                print(f"    audio from {precision} features vs fp32 features: durations {'same' if same else 'DIFFER'}"
                      f", SNR {snr_db(outs['fp32'][0], outs[precision][0]):.1f} dB")
        del model


# ---------------------------------------------------------------------------------- request patterns (issue 26)

#: ten distinct request lengths (phone ids) after a warm-up on two others: every request has a new length
DISTINCT_PHONES = (41, 57, 66, 73, 89, 97, 106, 118, 131, 149)
WARMUP_PHONES = (35, 140)
ZH_SENTENCES = ("我们去公园。", "今天的天气很好，阳光明媚。", "孩子们在草地上放风筝，笑声传得很远。", "请把窗户打开。",
                "湖边的柳树已经发芽了，春天真的来了。", "傍晚的时候我们再回家吃饭，妈妈做了很多好吃的菜。", "你好！",
                "明天早上八点，我们在学校门口集合，然后一起坐车去博物馆参观。", "这本书很有意思。",
                "他每天早上六点起床，先跑步半个小时，再吃早饭。")
ZH_WARMUP = ("欢迎来到这里。", "昨天晚上下了一场大雨，路上到处都是水。")


def _pattern_paths(args) -> dict:
    plain = remove_weight_norm_(build_model(args.frames_per_phone))
    return {
        "upstream fp32": build_model(args.frames_per_phone),  # weight norm active, plain modules
        "fp32 fast": optimize_for_inference(copy.deepcopy(plain), "fp32"),  # unbucketed: bucketing_default
        "fp32 fast bucketed": optimize_for_inference(copy.deepcopy(plain), "fp32", bucketed=True),
        "bf16 fast": optimize_for_inference(copy.deepcopy(plain), "bf16"),
    }


def _report(title: str, times: dict[str, list[float]], audio_s: float, base: str) -> None:
    print(f"\n{title}: {audio_s:.1f} s of audio per path")
    print(f"  {'path':<22s} {'wall s':>7s} {'RTF':>6s} {'x ' + base:>18s}")
    ref = sum(times[base])
    for name, ts in times.items():
        print(f"  {name:<22s} {sum(ts):7.2f} {sum(ts) / audio_s:6.3f} {ref / sum(ts):17.2f}x")


def bench_patterns(args) -> None:
    """The generator alone on both request patterns, paths interleaved request by request."""
    paths = _pattern_paths(args)
    if args.warmup_s > 0:
        from bert_vits2.inference import warm_up

        for name, net in paths.items():
            done = warm_up(net, args.warmup_s)  # only the bucketed paths have something to warm
            if done["shapes"]:
                print(f"warm-up {name}: {done['shapes']} bucket lengths in {done['seconds']:.1f} s")
    kw = dict(sdp_ratio=0.5, noise_scale=0.667, noise_scale_w=0.8)

    def run(pattern: list[int]) -> tuple[dict[str, list[float]], float]:
        times: dict[str, list[float]] = {k: [] for k in paths}
        audio = 0.0
        for n in pattern:
            inputs = make_inputs(n, seed=n)
            for name, net in paths.items():
                t0 = time.perf_counter()
                out = net.infer(*inputs, generator=torch.Generator().manual_seed(n), **kw)
                times[name].append(time.perf_counter() - t0)
            audio += out[0].shape[-1] / SAMPLING_RATE
        return times, audio

    with torch.inference_mode():
        run(list(WARMUP_PHONES))
        times, audio = run([args.repeat_phones] * args.repeat_count)
        _report(f"generator, one input repeated ({args.repeat_phones} phones x {args.repeat_count})", times, audio,
                "upstream fp32")
        times, audio = run(list(DISTINCT_PHONES[:args.distinct]))
        _report(f"generator, {args.distinct} distinct lengths after a warm-up on {WARMUP_PHONES}", times, audio,
                "upstream fp32")
    bench_decoder_bound(paths)


def _conv_gflop(modules, run) -> float:
    """GFLOP (2 x multiply-adds) of the Conv1d / ConvTranspose1d among ``modules`` while ``run()`` runs."""
    total = [0.0]

    def hook(mod, inputs, out):
        c_in, k = inputs[0].shape[1], mod.kernel_size[0]
        if isinstance(mod, torch.nn.ConvTranspose1d):
            total[0] += 2.0 * inputs[0].shape[-1] * c_in * mod.out_channels // mod.groups * k
        else:
            total[0] += 2.0 * out.shape[-1] * out.shape[1] * c_in // mod.groups * k

    handles = [m.register_forward_hook(hook) for m in modules
               if isinstance(m, (torch.nn.Conv1d, torch.nn.ConvTranspose1d))]
    try:
        run()
    finally:
        for h in handles:
            h.remove()
    return total[0] / 1e9


def decoder_conv_gflop(dec: torch.nn.Module, z: torch.Tensor, g: torch.Tensor) -> float:
    """Convolution GFLOP of the decoder on ``z``, counted with forward hooks."""
    return _conv_gflop(dec.modules(), lambda: dec(z, g=g))


def bench_decoder_bound(paths: dict, frames: int = 200, repeats: int = 3) -> None:
    """What bounds the generator on this CPU: the decoder's convolution FLOPs per second of audio, the throughput each
    path's decoder reaches, and the GEMM throughput of the same threads (the ceiling for oneDNN's convolutions)."""
    upstream = paths["upstream fp32"]
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(1, upstream.dec.conv_pre.in_channels, frames, generator=gen)
    g = torch.randn(1, upstream.gin_channels, 1, generator=gen) if upstream.n_speakers > 0 else None
    with torch.inference_mode():
        gflop = decoder_conv_gflop(upstream.dec, z, g)
        audio_s = upstream.dec(z, g=g).shape[-1] / SAMPLING_RATE
        peak = {"fp32": gemm_gflops(torch.float32), "bf16": gemm_gflops(torch.bfloat16)}
        print(f"\ndecoder bound: {gflop / audio_s:.1f} GFLOP of convolutions per second of audio "
              f"({frames} z frames = {audio_s:.2f} s); GEMM 2048^2 on these threads: fp32 {peak['fp32']:.0f}, "
              f"bf16 {peak['bf16']:.0f} GFLOP/s")
        print(f"  {'path':<22s} {'decoder s':>9s} {'RTF':>6s} {'GFLOP/s':>8s} {'of GEMM':>8s}")
        for name, net in paths.items():
            if name.endswith("bucketed"):
                continue
            net.dec(z, g=g)
            best = math.inf
            for _ in range(repeats):
                t0 = time.perf_counter()
                net.dec(z, g=g)
                best = min(best, time.perf_counter() - t0)
            ceiling = peak["bf16" if name.startswith("bf16") else "fp32"]
            print(f"  {name:<22s} {best:9.3f} {best / audio_s:6.3f} {gflop / best:8.1f} {gflop / best / ceiling:7.0%}")
        _decoder_stages(upstream, z, g, peak["fp32"])
        print("  (a path near 100 % of GEMM is bound by the CPU's matrix throughput: only fewer FLOPs or a faster "
              "matrix unit make it faster)")


def _decoder_stages(net, z: torch.Tensor, g: torch.Tensor | None, ceiling: float) -> None:
    """Time and FLOPs per upsampling stage of a decoder with upstream's layout (``ups[i]`` then its resblocks)."""
    dec = net.dec
    n_kernels = len(dec.resblocks) // len(dec.ups)
    spans: dict[int, list[float]] = {i: [0.0] for i in range(len(dec.ups))}  # seconds
    started: dict[int, float] = {}
    handles = []
    for i in range(len(dec.ups)):
        members = [dec.ups[i], *dec.resblocks[i * n_kernels:(i + 1) * n_kernels]]
        for m in members:
            handles.append(m.register_forward_pre_hook(lambda mod, inp, i=i: started.__setitem__(i, time.perf_counter())))
            handles.append(m.register_forward_hook(
                lambda mod, inp, out, i=i: spans[i].__setitem__(0, spans[i][0] + time.perf_counter() - started[i])))
    try:
        dec(z, g=g)  # warm
        for v in spans.values():
            v[0] = 0.0
        dec(z, g=g)
    finally:
        for h in handles:
            h.remove()
    flop = _stage_gflop(dec, z, g, n_kernels)
    print("  per stage of upstream's fp32 decoder (channels, seconds with hook overhead, GFLOP/s, share of GEMM):")
    for i, (sec,) in spans.items():
        ch = dec.ups[i].out_channels
        print(f"    stage {i + 1}: {ch:4d} ch {sec:7.3f} s {flop[i] / max(sec, 1e-9):7.1f} GFLOP/s "
              f"{flop[i] / max(sec, 1e-9) / ceiling:5.0%}")


def _stage_gflop(dec, z, g, n_kernels: int) -> list[float]:
    """Convolution GFLOP of each upsampling stage (its transposed conv and its resblocks)."""
    stages = [torch.nn.ModuleList([dec.ups[i], *dec.resblocks[i * n_kernels:(i + 1) * n_kernels]])
              for i in range(len(dec.ups))]
    return [_conv_gflop(stage.modules(), lambda: dec(z, g=g)) for stage in stages]


def bench_voice(args) -> None:
    """Voice.synthesize and Voice.stream end to end (text frontend, a BERT-large-shaped random BERT, synthesis)."""
    import shutil
    from pathlib import Path

    from bench_server import make_voice

    from bert_vits2.inference import load_model_for_inference
    from bert_vits2.synthesis import Voice, find_model_files

    tmp = Path(tempfile.mkdtemp(prefix="bv2-bench-voice-"))
    try:
        folder = make_voice(tmp / "voice", Path(args.ref), args.voice_bert)
        files = find_model_files(folder)
        model, hps = load_model_for_inference(files.config, files.checkpoint, precision="fp32", fast=False)
        voices = {"upstream fp32": Voice(model, hps, files)}
        for precision in ("fp32", "bf16"):
            t0 = time.perf_counter()
            voices[f"{precision} fast"] = Voice.load(files, precision=precision)
            print(f"Voice.load precision={precision}: {time.perf_counter() - t0:.1f} s (warm-up included)")

        def run(texts, mode: str) -> tuple[dict[str, list[float]], float]:
            times: dict[str, list[float]] = {k: [] for k in voices}
            audio = 0.0
            for i, text in enumerate(texts):
                for name, voice in voices.items():
                    t0 = time.perf_counter()
                    if mode == "synthesize":
                        n = len(voice.synthesize(text, seed=i).audio)
                    else:
                        n = sum(len(c.audio) for c in voice.stream(text, seed=i))
                    times[name].append(time.perf_counter() - t0)
                audio += n / SAMPLING_RATE
            return times, audio

        for mode in ("synthesize", "stream"):
            run(list(ZH_WARMUP), mode)
            times, audio = run([ZH_SENTENCES[5]] * args.repeat_count, mode)
            _report(f"Voice.{mode}, one sentence repeated x{args.repeat_count}", times, audio, "upstream fp32")
            times, audio = run(list(ZH_SENTENCES[:args.distinct]), mode)
            _report(f"Voice.{mode}, {args.distinct} distinct sentences", times, audio, "upstream fp32")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per input; the best is reported (default 2)")
    parser.add_argument("--phones", type=int, nargs="+", default=[50, 200], help="input lengths in phone ids")
    parser.add_argument("--frames-per-phone", type=float, default=5.0, help="mean frames per phone id (default 5)")
    parser.add_argument("--onnx", action="store_true", help="also export the six graphs and time onnxruntime")
    parser.add_argument("--bert", action="store_true", help="also time the three full-size BERTs (~6 GB RAM)")
    parser.add_argument("--bert-tokens", type=int, default=32, help="tokens per BERT sentence (default 32)")
    parser.add_argument("--no-synthesis", action="store_true", help="skip the synthesis table")
    parser.add_argument("--patterns", action="store_true",
                        help="generator on both request patterns: one input repeated, distinct lengths (issue 26)")
    parser.add_argument("--voice", action="store_true",
                        help="Voice.synthesize / Voice.stream end to end on both patterns (BERT-large-shaped BERT)")
    parser.add_argument("--distinct", type=int, default=10, help="distinct requests per pattern (default 10)")
    parser.add_argument("--repeat-phones", type=int, default=97, help="phone ids of the repeated input (default 97)")
    parser.add_argument("--repeat-count", type=int, default=3, help="runs of the repeated input (default 3)")
    parser.add_argument("--warmup-s", type=float, default=0.0,
                        help="--patterns: warm_up budget per bucketed path before the requests (default 0)")
    parser.add_argument("--voice-bert", choices=("full", "tiny"), default="full",
                        help="--voice: BERT-large-shaped random BERT (full) or the 2-layer one (tiny)")
    parser.add_argument("--ref", default=str(Path(__file__).resolve().parents[2] / "shared" / "reference" / "bv2"),
                        help="reference folder (tokenizer of the test BERT)")
    args = parser.parse_args()

    logging.basicConfig(level=logging.WARNING)
    warnings.simplefilter("ignore")
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, GEMM 2048^2: "
          f"fp32 {gemm_gflops(torch.float32):.0f} GFLOP/s, bf16 {gemm_gflops(torch.bfloat16):.0f} GFLOP/s")
    print(f"CPU: {cpu_name()}; native bf16 (AVX512-BF16/AMX): {_cpu_has_native_bf16()}")
    if not args.no_synthesis:
        bench_synthesis(args)
    if args.patterns:
        bench_patterns(args)
    if args.voice:
        bench_voice(args)
    if args.bert:
        bench_bert(args)
    try:
        load = open("/proc/loadavg").read().split()[:3]
        print(f"\nload average {' '.join(load)} (other processes share the cores: wall times include contention)")
    except OSError:
        pass


if __name__ == "__main__":
    main()
