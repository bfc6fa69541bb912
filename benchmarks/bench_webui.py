"""End-to-end latency of one web-UI request on CPU: a 20-character Chinese sentence, full-size v2.3 generator.

The generator is the released v2.3 layout (configs/config.json: hidden 192, gin 512, 850 speakers) with random
weights (dp.proj.bias = log 5 for speech-like durations); the ZH BERT is a tiny random one (2 layers, hidden 1024,
tokenizer of ../shared/reference/bv2/bert_tiny_zh), so the BERT figure is NOT the cost of the real 330M-parameter
RoBERTa-large. Stages: frontend (clean_text: normalisation, g2p), BERT (get_text minus frontend), synthesis
(SynthesizerTrn.infer), face (rule-based lip-sync + post-processing), outputs (wav/npy/csv/json/png).

Run:  python benchmarks/bench_webui.py [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
TEXT = "今天天气很好，我们一起去公园散步吧，好吗朋友？"  # 20 Chinese characters + punctuation


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--shared", default=str(REPO.parent / "shared" / "reference" / "bv2"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(REPO / "tests"))
    from webui_helpers import _tiny_bert_zh

    from bert_vits2.hparams import load_hparams
    from bert_vits2.inference import remove_weight_norm_
    from bert_vits2.models import SynthesizerTrn
    from bert_vits2.synthesis import ModelFiles, Voice
    from bert_vits2.text import clean_text
    from bert_vits2.text.bert import BERT_MODELS
    from motion.face.api import FaceMaker
    from motion.face.outputs import new_request_dir, write_outputs

    n_chars = sum(1 for c in TEXT if "\u4e00" <= c <= "\u9fff")
    hps = load_hparams(REPO / "configs" / "config.json")
    hps.data.spk2id = {"spk0": 0}
    torch.manual_seed(0)
    model = SynthesizerTrn(112, hps.data.filter_length // 2 + 1, hps.train.segment_size // hps.data.hop_length,
                           n_speakers=hps.data.n_speakers, **hps.model)
    with torch.no_grad():
        model.dp.proj.bias.fill_(math.log(5.0))
    model.eval()
    remove_weight_norm_(model)
    params = sum(p.numel() for p in model.parameters())
    with tempfile.TemporaryDirectory() as tmp:
        bert_zh = Path(tmp) / BERT_MODELS["ZH"].folder_name
        _tiny_bert_zh(Path(args.shared) / "bert_tiny_zh", bert_zh)
        voice = Voice(model, hps, ModelFiles(None, None, {"ZH": bert_zh, "JP": bert_zh, "EN": bert_zh}, []))
        face_maker = FaceMaker()
        rows = []
        for i in range(args.repeats + 1):  # first run = warm-up (loads BERT, jieba, ...)
            t0 = time.perf_counter()
            clean_text(TEXT, "ZH")
            frontend = time.perf_counter() - t0
            t0 = time.perf_counter()
            result = voice.synthesize(TEXT, "spk0", "ZH", seed=i)
            face = face_maker.for_result(result)
            t1 = time.perf_counter()
            write_outputs(new_request_dir(tmp), result.audio, result.sample_rate, face, {"text": TEXT})
            t2 = time.perf_counter()
            tm = result.timings
            rows.append({"frontend": frontend, "bert": max(0.0, tm["text_inputs"] - frontend),
                         "synthesis": tm["synthesis"], "face": tm["face"], "outputs": t2 - t1, "total": t2 - t0,
                         "audio_s": result.duration_s})
            if i == 0:
                print(f"warm-up request: {rows[0]['total']:.2f} s (includes loading BERT / frontend dictionaries)")
        runs = rows[1:]
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(f"generator: full-size v2.3 layout, {params / 1e6:.1f} M params (weight norm folded), random weights")
    print(f"text: {n_chars} Chinese characters; audio {med['audio_s']:.2f} s at {hps.data.sampling_rate} Hz; "
          f"torch threads {args.threads}; median of {len(runs)}")
    for k in ("frontend", "bert", "synthesis", "face", "outputs", "total"):
        print(f"  {k:10s} {med[k] * 1000:8.1f} ms")
    print(f"  real-time factor (total / audio) {med['total'] / med['audio_s']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
