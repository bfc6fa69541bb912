"""Slices (``|``), mix and auto synthesised as upstream's web UI does (issue 14).

The reference is built here from the spec's facts, independently of ``Voice``'s code path:

- spec §6: the web UI synthesises each ``|`` slice separately; a slice joined to the previous one is called with
  ``skip_start`` (its first 3 ids are dropped: blank, ``_``, blank), one joined to the next with ``skip_end`` (its last
  2 ids: ``_``, blank) — §4 explains the 3/2 by [CLS] / [SEP];
- spec §6: ``infer_multilang`` runs ``get_text`` per language segment, trims the same 3/2 boundary ids between the
  segments and concatenates them into ONE utterance (one ``infer`` call); mix and auto slices go through it;
- spec §6: each slice's float audio is converted with gradio's ``convert_to_16_bit_wav`` (peak-normalised, * 32767,
  truncated to int16) and the slices are concatenated.

The voice is the tiny random one of the other synthesis tests with its duration predictor forced to one frame per
id (``exp(logw) = 0.5`` -> ceil 1 with ``sdp_ratio=0``), so sample counts follow from id counts alone: that is the
setting of the issue's example (28,672 samples as separate utterances, 26,112 as upstream).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bert_vits2.synthesis import SliceCall, Voice, find_model_files, peak_normalize_pcm16, plan_slices
from bert_vits2.text.inputs import get_text

EXAMPLE = "你好，世界！|今天天气很好。"
NOISELESS = dict(noise_scale=0.0, noise_scale_w=0.0, sdp_ratio=0.0)


@pytest.fixture(scope="module")
def voice(bv2_ref, tmp_path_factory) -> Voice:
    from webui_helpers import make_tiny_voice

    v = Voice.load(find_model_files(make_tiny_voice(bv2_ref, tmp_path_factory.mktemp("voice"))))
    with torch.no_grad():  # one z frame per id: dp's log-duration is log(0.5) everywhere
        v.model.dp.proj.weight.zero_()
        v.model.dp.proj.bias.fill_(math.log(0.5))
    return v


def _n_ids(voice: Voice, text: str, lang: str) -> int:
    return len(get_text(text, lang, voice.hps, bert_dirs=voice.files.bert_dirs).phone_ids)


def _reference(voice: Voice, slices: list[list[tuple[str, str]]], seed: int, noise: dict) -> list[np.ndarray]:
    """Upstream's web UI from the spec: per slice infer_multilang with skip_start/skip_end; float audio per slice."""
    torch.manual_seed(seed)
    out = []
    for idx, runs in enumerate(slices):
        skip_start, skip_end = idx != 0, idx != len(slices) - 1
        feats = []
        for k, (lang, text) in enumerate(runs):
            inp = get_text(text, lang, voice.hps, bert_dirs=voice.files.bert_dirs)
            t = [inp.bert, inp.ja_bert, inp.en_bert, inp.phone_ids, inp.tone_ids, inp.language_ids]
            if k != 0 or skip_start:
                t = [a[..., 3:] for a in t]
            if k != len(runs) - 1 or skip_end:
                t = [a[..., :-2] for a in t]
            feats.append(t)
        bert, ja, en, x, tone, lang_ids = (torch.cat([f[i] for f in feats], dim=-1) for i in range(6))
        with torch.no_grad():
            o = voice.model.infer(x[None], torch.LongTensor([x.shape[0]]), torch.LongTensor([0]), tone[None],
                                  lang_ids[None], bert[None], ja[None], en[None], **noise)[0]
        out.append(o[0, 0].numpy())
    return out


def test_plan_slices_trims_only_at_bar_joins():
    calls = plan_slices(EXAMPLE, "ZH")
    assert [(c.runs, c.skip_start, c.skip_end) for c in calls] == [
        ([("ZH", "你好，世界！")], False, True), ([("ZH", "今天天气很好。")], True, False)]
    three = plan_slices("一|二|三", "JP")
    assert [(c.skip_start, c.skip_end) for c in three] == [(False, True), (True, True), (True, False)]
    # sentence / paragraph pieces have pauses between them: never trimmed (upstream's split mode is separate calls)
    para = plan_slices("第一句。第二句。", "ZH", by_sentence=True)
    assert [(c.skip_start, c.skip_end, c.pause_after_s) for c in para] == [(False, False, 0.2), (False, False, 0.0)]
    # auto: one call per slice over its language runs
    auto = plan_slices("你好 hello|好的", "auto")
    assert [c.runs for c in auto] == [[("ZH", "你好"), ("EN", "hello")], [("ZH", "好的")]]
    assert [(c.skip_start, c.skip_end) for c in auto] == [(False, True), (True, False)]
    # mix: "|" inside a speaker's text cuts slices (trimmed); a new [speaker] starts an untrimmed one
    mix = plan_slices("[bob]<zh>你好<en>hello|<zh>好的[alice]<jp>さようなら", "mix")
    assert mix == [
        SliceCall([("ZH", "你好"), ("EN", "hello")], "bob", False, True),
        SliceCall([("ZH", "好的")], "bob", True, False),
        SliceCall([("JP", "さようなら")], "alice", False, False),
    ]


def test_issue_example_sample_count(voice):
    """The issue's figures: 25 + 31 ids as two utterances = 56 frames = 28,672 samples; upstream trims 2 + 3 ids at the
    join and gives 51 frames = 26,112 samples."""
    separate = [voice.synthesize(t, None, "ZH", seed=0, **NOISELESS) for t in EXAMPLE.split("|")]
    assert [len(r.phones) for r in separate] == [25, 31]
    assert sum(len(r.audio) for r in separate) == 28_672
    got = voice.synthesize(EXAMPLE, None, "ZH", seed=0, **NOISELESS)
    assert len(got.audio) == 26_112
    assert len(got.phones) == 51 and got.phones[21:25] == ["!", "_", "j", "_"]  # "...!" + blank | first phone of slice 2
    assert got.z.shape[1] * voice.hop == len(got.audio)
    assert got.durations.sum() == pytest.approx(len(got.audio) / voice.sample_rate)
    assert [p["text"] for p in got.pieces] == EXAMPLE.split("|")
    assert got.pieces[0]["end_s"] == pytest.approx(23 * voice.hop / voice.sample_rate)  # 25 ids - 2 trimmed


@pytest.mark.parametrize("noise", [NOISELESS, dict(noise_scale=0.6, noise_scale_w=0.9, sdp_ratio=0.5)],
                         ids=["noiseless", "noisy"])
def test_slices_match_reference_and_int16_output(voice, noise):
    ref = _reference(voice, [[("ZH", "你好，世界！")], [("ZH", "今天天气很好。")]], seed=7, noise=noise)
    got = voice.synthesize(EXAMPLE, "alice", "ZH", seed=7, **noise)
    np.testing.assert_allclose(got.audio, np.concatenate(ref), rtol=0, atol=1e-6)
    pcm = voice.synthesize(EXAMPLE, "alice", "ZH", seed=7, peak_normalize=True, **noise)
    expected = np.concatenate([peak_normalize_pcm16(a) for a in ref])  # what upstream's web UI returns
    assert np.abs((pcm.audio * 32768).astype(np.int16).astype(np.int32) - expected).max() <= 1
    n0 = len(ref[0])  # each slice is normalised on its own: both reach full scale
    assert np.abs(expected[:n0]).max() == 32767 and np.abs(expected[n0:]).max() == 32767


def test_auto_is_one_utterance_per_slice(voice):
    text = "你好 hello|好的"
    ref = _reference(voice, [[("ZH", "你好"), ("EN", "hello")], [("ZH", "好的")]], seed=3, noise=NOISELESS)
    got = voice.synthesize(text, None, "auto", seed=3, **NOISELESS)
    np.testing.assert_allclose(got.audio, np.concatenate(ref), rtol=0, atol=1e-6)
    # ids, one frame each: [你好 -2][-3 hello -2] | [-3 好的]
    n_en = _n_ids(voice, "hello", "EN")
    assert len(got.audio) == (_n_ids(voice, "你好", "ZH") - 2 + n_en - 5 + _n_ids(voice, "好的", "ZH") - 3) * voice.hop
    assert [p["language"] for p in got.pieces] == ["ZH", "EN", "ZH"]
    assert got.phone_langs.count("en") == n_en - 5
    assert got.z.shape[1] * voice.hop == len(got.audio) and len(got.phones) == len(got.durations)
    for piece in got.pieces:  # each run's span covers exactly its phones
        inside = [lang for lang, t0 in zip(got.phone_langs, np.cumsum(got.durations) - got.durations)
                  if piece["start_s"] - 1e-9 <= t0 < piece["end_s"] - 1e-9]
        assert set(inside) == {piece["language"].lower().replace("jp", "ja")}


def test_mix_speakers_and_slices(voice):
    text = "[bob]<zh>你好<en>hello|<zh>好的[alice]<zh>再见"
    got = voice.synthesize(text, "alice", "mix", seed=5, **NOISELESS)
    assert [(p["speaker"], p["language"], p["text"]) for p in got.pieces] == [
        ("bob", "ZH", "你好"), ("bob", "EN", "hello"), ("bob", "ZH", "好的"), ("alice", "ZH", "再见")]
    # bob: [你好 -2][-3 hello -2] | [-3 好的]; alice: [再见] untrimmed (another request upstream)
    n = _n_ids(voice, "你好", "ZH") - 2 + _n_ids(voice, "hello", "EN") - 5 + _n_ids(voice, "好的", "ZH") - 3
    assert len(got.audio) == (n + _n_ids(voice, "再见", "ZH")) * voice.hop
    assert got.z.shape[1] * voice.hop == len(got.audio)
