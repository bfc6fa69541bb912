"""Synthesis API (bert_vits2.synthesis) and faces/outputs (motion.face) with a tiny random voice and the demo voice."""

from __future__ import annotations

import json
import math
import socket
import threading

import numpy as np
import pytest
import torch

from bert_vits2.synthesis import SynthesisError, Voice, find_model_files, split_text
from motion.arkit import INDEX
from motion.demo_voice import DemoVoice
from motion.face.api import FaceMaker
from motion.face.outputs import new_request_dir, write_outputs
from motion.send import Streamer


@pytest.fixture(scope="module")
def voice(bv2_ref, tmp_path_factory) -> Voice:
    from webui_helpers import make_tiny_voice

    folder = make_tiny_voice(bv2_ref, tmp_path_factory.mktemp("voice"))
    return Voice.load(find_model_files(folder))


def test_split_text_pieces_and_pauses():
    text = "第一句。第二句！\n第二段|切片"
    assert split_text(text) == [("第一句。第二句！\n第二段", 0.0), ("切片", 0.0)]
    got = split_text(text, by_paragraph=True, by_sentence=True, paragraph_pause_s=1.0, sentence_pause_s=0.2)
    assert got == [("第一句。", 0.2), ("第二句！", 1.0), ("第二段", 0.2), ("切片", 0.0)]


def test_find_model_files_reports_missing(tmp_path):
    files = find_model_files(tmp_path, bert_dir=tmp_path)
    assert not files.complete
    text = files.describe()
    assert "generator checkpoint (G_*.pth): **missing**" in text and "--checkpoint" in text
    assert "hfl/chinese-roberta-wwm-ext-large" in text  # where to get the missing BERT


def test_voice_picks_latest_checkpoint_and_lists_speakers(voice):
    assert voice.files.checkpoint.name == "G_10.pth"
    assert voice.speakers == ["alice", "bob"]
    with pytest.raises(SynthesisError, match="alice, bob"):
        voice.synthesize("你好", "nobody", "ZH")
    with pytest.raises(SynthesisError, match="empty"):
        voice.synthesize("  ", None, "ZH")


def _check_alignment(result, face, pause_s: float):
    dur = result.duration_s
    assert result.durations.sum() == pytest.approx(dur, abs=1e-6)
    assert abs(len(face.frames) - dur * face.fps) <= 1.0  # frames cover the audio within one frame
    assert len(face.frames) == math.ceil(dur * face.fps - 1e-6)
    assert len(result.pieces) == 2
    gap0, gap1 = result.pieces[0]["end_s"], result.pieces[1]["start_s"]
    assert gap1 - gap0 == pytest.approx(pause_s, abs=1.0 / result.z_fps if result.z is not None else 1e-3)
    a, b = int(gap0 * result.sample_rate) + 1, int(gap1 * result.sample_rate) - 1
    assert np.all(result.audio[a:b] == 0.0)  # the pause is silence
    mid = int((gap0 + gap1) / 2 * face.fps)
    assert face.frames[mid, INDEX["JawOpen"]] < 0.1  # ... and the mouth rests in it
    return mid


@pytest.mark.slow
def test_bv2_face_aligned_with_pauses(voice):
    result = voice.synthesize("你好。今天天气很好。", "bob", "ZH", split_sentences=True, sentence_pause_s=0.5, seed=3)
    assert result.z.shape[1] * voice.hop == len(result.audio)  # z frames and audio line up, pause included
    assert len(result.phones) == len(result.durations) == len(result.phone_langs)
    face = FaceMaker(blink=False, use_default_head=False).for_result(result)
    assert face.source == "rule-based lip-sync from phone durations"
    mid = _check_alignment(result, face, 0.5)
    speaking = face.frames[: int(result.pieces[0]["end_s"] * face.fps), INDEX["JawOpen"]]
    assert speaking.max() > face.frames[mid, INDEX["JawOpen"]] + 0.05


def test_demo_voice_face_aligned_with_pauses():
    result = DemoVoice().synthesize("Hello there. How are you?", None, "EN", split_sentences=True, sentence_pause_s=0.4)
    face = FaceMaker(blink=False, use_default_head=False).for_result(result)
    _check_alignment(result, face, 0.4)
    default = FaceMaker(blink=False).for_result(result)  # synthesis results: from the phones by default
    assert default.source == "rule-based lip-sync from phone durations"
    _check_alignment(result, default, 0.4)
    default = FaceMaker(blink=False, result_source="audio").for_result(result)  # the shipped head reads the audio
    assert default.source.startswith("shipped default mel head")
    _check_alignment(result, default, 0.4)
    assert result.z is None and result.sample_rate == 22050


@pytest.mark.slow
def test_mix_and_auto_languages(voice):
    auto = voice.synthesize("你好 hello", None, "auto", seed=0)
    assert [p["language"] for p in auto.pieces] == ["ZH", "EN"]
    assert set(auto.phone_langs) == {"zh", "en"}
    mix = voice.synthesize("[bob]<zh>你好<en>hello", "alice", "mix", seed=0)
    assert [p["speaker"] for p in mix.pieces] == ["bob", "bob"]


@pytest.mark.slow
def test_concurrent_requests_do_not_interfere(voice):
    texts = ["你好。", "今天天气很好。", "我们走吧。"]
    serial = [voice.synthesize(t, "alice", "ZH", seed=i).audio for i, t in enumerate(texts)]
    got: dict[int, np.ndarray] = {}
    errors = []

    def run(i: int) -> None:
        try:
            got[i] = voice.synthesize(texts[i], "alice", "ZH", seed=i).audio
        except Exception as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(texts)) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    for i, ref in enumerate(serial):
        np.testing.assert_array_equal(got[i], ref)


@pytest.mark.slow
def test_trained_z_head_face(voice, tmp_path):
    from motion.face.heads import build_head, head_config

    cfg = head_config("z", in_channels=32, use_transformer=False, rnn_hidden=8, rnn_layers=1, mlp_hidden=8)
    torch.manual_seed(0)
    head = build_head(cfg)
    torch.save({"model": head.state_dict(), "head_config": cfg, "feature": {"kind": "z", "fps": 44100 / 512}},
               tmp_path / "V_1.pth")
    result = voice.synthesize("你好。再见。", None, "ZH", split_sentences=True, sentence_pause_s=0.3, seed=1)
    face = FaceMaker(tmp_path / "V_1.pth", blink=False).for_result(result)
    assert face.source.startswith("trained z head")
    assert len(face.frames) == math.ceil(result.duration_s * 60 - 1e-6)
    assert np.isfinite(face.frames).all() and face.frames.min() >= -1 and face.frames.max() <= 1


def test_write_outputs_and_audio_face(tmp_path):
    from motion.livelink.app_csv import read_csv

    result = DemoVoice().synthesize("你好", None, "ZH")
    maker = FaceMaker(result_source="audio")  # the result's face read from its audio, as any recording's
    face = maker.for_result(result)
    folder = new_request_dir(tmp_path)
    assert new_request_dir(tmp_path) != folder
    paths = write_outputs(folder, result.audio, result.sample_rate, face, {"text": "你好"})
    assert all(p.is_file() and p.parent == folder for p in paths.values())
    frames, fps = read_csv(paths["csv"])
    np.testing.assert_allclose(frames, np.load(paths["npy"]), atol=1e-6)
    info = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert info["names"][17] == "JawOpen" and info["fps"] == 60 and info["num_frames"] == len(frames)
    a2f = maker.for_audio(result.audio, result.sample_rate)
    assert a2f.source == face.source and len(a2f.frames) == len(face.frames)
    np.testing.assert_array_equal(a2f.frames, face.frames)  # one API: the same audio gives the same face


def test_streamer_sends_live_link_packets():
    from motion.livelink import decode_packet

    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(5.0)
    frames = np.zeros((6, 61), dtype=np.float32)
    frames[:, INDEX["JawOpen"]] = 0.5
    streamer = Streamer()
    msg = streamer.start("livelink", frames, 60.0, None, 22050, "127.0.0.1", rx.getsockname()[1], with_audio=False)
    assert "6 frames" in msg
    packets = [rx.recv(4096) for _ in range(6)]
    streamer.wait(5.0)
    rx.close()
    decoded = [decode_packet(p) for p in packets]
    assert all(d.ok for d in decoded)
    assert decoded[0].frame.values[INDEX["JawOpen"]] == pytest.approx(0.5)


@pytest.mark.slow  # ~10 s on 2 cores
def test_web_ui_loads_the_voice_at_the_requested_precision(bv2_ref, tmp_path, monkeypatch):
    from webui_helpers import make_tiny_voice

    from motion.webui.app import WebUIConfig, WebUIState

    monkeypatch.setattr("bert_vits2.inference.DEFAULT_WARMUP_S", 0.0)  # the bf16 warm-up is tested in test_speed_paths

    folder = make_tiny_voice(bv2_ref, tmp_path / "voice")
    state = WebUIState(WebUIConfig(model_dir=str(folder), outputs_dir=str(tmp_path / "out"), precision="bf16"))
    voice = next(v for k, v in state.voices.items() if k.startswith("Bert-VITS2"))
    assert voice.model.precision == "bf16"


def test_web_ui_outputs_upstream_peak_normalised_16_bit_audio(bv2_ref, tmp_path):
    import soundfile as sf
    from webui_helpers import make_tiny_voice

    from motion.webui.app import Handlers, WebUIConfig, WebUIState

    folder = make_tiny_voice(bv2_ref, tmp_path / "voice")
    h = Handlers(WebUIState(WebUIConfig(model_dir=str(folder), outputs_dir=str(tmp_path / "out"),
                                        use_default_head=False)))
    name = next(k for k in h.state.voices if k.startswith("Bert-VITS2"))
    wav, *_ = h.tts(name, "你好，世界！", None, "ZH", 0.5, 0.6, 0.8, 1.0, "", 0.7, False, False, 0.5, 0.2)
    pcm, _ = sf.read(wav, dtype="int16")
    assert abs(int(np.abs(pcm.astype(np.int32)).max()) - 32767) <= 1  # the slice's peak is full scale, as upstream
