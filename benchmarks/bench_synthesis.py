"""CPU synthesis speed of the full-size Bert-VITS2 v2.3 generator (random weights).

Prints the real-time factor (synthesis time / audio duration, lower is better) for a 50- and a 200-phone input,
the time of each stage (text encoder, duration predictors, flow, decoder) and the peak resident memory.
Run:  python benchmarks/bench_synthesis.py [--threads 2] [--repeats 3] [--phones 50 200]
Random weights give arbitrary durations, so dp.proj.bias is set to log(--frames-per-phone) to get speech-like
lengths (the default 5 frames per phone ~ 17 phones/s incl. blanks at 44.1 kHz / hop 512).
"""

from __future__ import annotations

import argparse
import math
import resource
import time

import torch

from bert_vits2.models import SynthesizerTrn, remove_weight_norm_

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


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


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


def staged_infer(net_g: SynthesizerTrn, inputs, sdp_ratio=0.5, noise_scale=0.667, noise_scale_w=0.8):
    """The steps of SynthesizerTrn.infer with a timer around each stage; returns (audio, {stage: seconds})."""
    x, x_lengths, sid, tone, language, bert, ja_bert, en_bert = inputs
    times = {}
    t0 = time.perf_counter()
    g = net_g.emb_g(sid).unsqueeze(-1)
    h, m_p, logs_p, x_mask = net_g.enc_p(x, x_lengths, tone, language, bert, ja_bert, en_bert, g=g)
    t1 = time.perf_counter()
    logw = net_g.sdp(h, x_mask, g=g, reverse=True, noise_scale=noise_scale_w) * sdp_ratio + net_g.dp(
        h, x_mask, g=g
    ) * (1 - sdp_ratio)
    attn, y_mask = net_g.durations_to_alignment(logw, x_mask, 1.0)
    m_p = torch.matmul(attn.squeeze(1), m_p.transpose(1, 2)).transpose(1, 2)
    logs_p = torch.matmul(attn.squeeze(1), logs_p.transpose(1, 2)).transpose(1, 2)
    z_p = m_p + torch.randn_like(m_p) * torch.exp(logs_p) * noise_scale
    t2 = time.perf_counter()
    z = net_g.flow(z_p, y_mask, g=g, reverse=True)
    t3 = time.perf_counter()
    o = net_g.dec(z * y_mask, g=g)
    t4 = time.perf_counter()
    times = {"text encoder": t1 - t0, "duration (sdp+dp+path)": t2 - t1, "flow": t3 - t2, "decoder": t4 - t3}
    return o, times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per input; the best is reported (default 3)")
    parser.add_argument("--phones", type=int, nargs="+", default=[50, 200], help="input lengths in phone ids")
    parser.add_argument("--frames-per-phone", type=float, default=5.0, help="mean frames per phone id (default 5)")
    parser.add_argument("--keep-weight-norm", action="store_true", help="do not fold weight norm (slower)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net_g = SynthesizerTrn(**FULL_V23).eval()
    with torch.no_grad():
        net_g.dp.proj.bias.fill_(math.log(args.frames_per_phone - 0.5))
    if not args.keep_weight_norm:
        remove_weight_norm_(net_g)
    n_params = sum(p.numel() for p in net_g.parameters())
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, params {n_params / 1e6:.2f} M, "
          f"weight norm {'kept' if args.keep_weight_norm else 'folded'}, RSS after build {peak_rss_mib():.0f} MiB")

    with torch.inference_mode():
        staged_infer(net_g, make_inputs(20))  # warm-up (allocator, oneDNN primitive caches)
        for n in args.phones:
            inputs = make_inputs(n)
            best_total, best_stages, audio_s = math.inf, None, 0.0
            best_infer, best_cpu = math.inf, math.inf
            for _ in range(args.repeats):
                torch.manual_seed(1)
                t0, c0 = time.perf_counter(), time.process_time()
                o = net_g.infer(*inputs, sdp_ratio=0.5)[0]
                best_infer = min(best_infer, time.perf_counter() - t0)
                best_cpu = min(best_cpu, time.process_time() - c0)
                torch.manual_seed(1)
                o2, stages = staged_infer(net_g, inputs)
                total = sum(stages.values())
                if total < best_total:
                    best_total, best_stages = total, stages
                audio_s = o.shape[-1] / SAMPLING_RATE
            frames = o.shape[-1] // HOP
            print(f"\n{n} phones -> {frames} frames, {audio_s:.2f} s audio")
            print(f"  infer(): best wall {best_infer:.3f} s  RTF {best_infer / audio_s:.3f}   "
                  f"(process CPU time {best_cpu:.3f} s = {best_cpu / audio_s:.3f} x audio, summed over threads)")
            for stage, sec in best_stages.items():
                print(f"  {stage:<24s} {sec * 1000:8.1f} ms  ({sec / audio_s:.3f} x real time)")
            print(f"  staged total {best_total:.3f} s  RTF {best_total / audio_s:.3f}")
    print(f"\npeak RSS {peak_rss_mib():.0f} MiB")
    try:
        load = open("/proc/loadavg").read().split()[:3]
        print(f"load average {' '.join(load)} (other processes share the cores: wall times include contention)")
    except OSError:
        pass


if __name__ == "__main__":
    main()
