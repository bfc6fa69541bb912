"""wav_to_visemes with the shipped default mel head: any format/rate/channels in, .v.npy + Live Link CSV + JSON out;
the head's agreement with the rule targets on unseen eSpeak speech; silence; the Python API for the web UI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf
import soxr

from motion.arkit import INDEX, NAMES
from motion.face.model import DEFAULT_HEAD, ExpressionModel

KEY_SHAPES = ("JawOpen", "MouthClose", "MouthFunnel", "MouthPucker")


@pytest.fixture(scope="module")
def speech():
    from motion.espeak_tts import synthesize

    audio, sr, _ = synthesize("Would you like some more tea? Maybe later, thanks.", voice="en-us")
    return audio, sr


def test_default_head_is_shipped_and_small():
    assert DEFAULT_HEAD.is_file(), "motion/face/assets/default_mel_head.pth must be in the repository"
    assert DEFAULT_HEAD.stat().st_size < 5e6
    model = ExpressionModel.load()
    assert model.kind == "mel" and model.checkpoint["training"]["script"] == "scripts/train_default_head.py"


def test_any_format_rate_and_channels_give_frames_covering_the_audio(speech, tmp_path):
    from motion import wav_to_visemes
    from motion.livelink.app_csv import read_csv

    audio, sr = speech
    src = tmp_path / "in"
    src.mkdir()
    a16 = soxr.resample(audio, sr, 16000)
    sf.write(src / "stereo16k.wav", np.stack([a16, 0.5 * a16], axis=1), 16000, subtype="PCM_16")
    sf.write(src / "mono48k.wav", soxr.resample(audio, sr, 48000), 48000, subtype="FLOAT")
    sf.write(src / "speech.mp3", audio, sr, format="MP3")
    sf.write(src / "speech.flac", soxr.resample(audio, sr, 44100), 44100)
    (src / "notes.txt").write_text("not audio")  # folders are filtered by extension
    out = tmp_path / "out"
    assert wav_to_visemes.main([str(src), "-o", str(out), "-q"]) == 0
    # speech.mp3 and speech.flac share a name: each keeps its extension instead of overwriting the other
    assert not (out / "speech.v.npy").exists()
    for name in ("stereo16k", "mono48k", "speech.mp3", "speech.flac"):
        frames = np.load(out / f"{name}.v.npy")
        info = json.loads((out / f"{name}.v.json").read_text())
        dur = info["duration_s"]
        assert abs(dur - len(audio) / sr) < 0.03, name  # mp3 adds a little padding
        assert frames.shape == (math.ceil(dur * 60 - 1e-6), 61), name
        assert info["names"] == list(NAMES) and info["fps"] == 60 and info["head"] == "mel"
        assert info["model"].endswith("default_mel_head.pth")
        csv_frames, fps = read_csv(out / f"{name}.v.csv")
        assert fps == 60 and np.abs(csv_frames - frames).max() < 1e-6
        assert frames[:, INDEX["JawOpen"]].max() > 0.15, "speech opens the mouth"
    # the same speech at different rates/channels gives nearly the same curves
    a, b = np.load(out / "mono48k.v.npy"), np.load(out / "speech.flac.v.npy")
    n = min(len(a), len(b))
    assert np.corrcoef(a[:n, INDEX["JawOpen"]], b[:n, INDEX["JawOpen"]])[0, 1] > 0.95
    # another frame rate, next to the input
    assert wav_to_visemes.main([str(src / "mono48k.wav"), "--fps", "30", "--mirror", "-q"]) == 0
    f30 = np.load(src / "mono48k.v.npy")
    assert f30.shape[0] == math.ceil(len(audio) / sr * 30 - 1e-6)
    assert np.array_equal(f30[:, INDEX["MouthSmileLeft"]], f30[:, INDEX["MouthSmileRight"]])


def test_bad_inputs_are_reported(tmp_path, capsys):
    from motion import wav_to_visemes

    assert wav_to_visemes.main([str(tmp_path / "missing.wav"), "-q"]) == 1
    assert "no such audio file" in capsys.readouterr().err
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....not really")
    assert wav_to_visemes.main([str(bad), "-q"]) == 1
    assert "bad.wav" in capsys.readouterr().err


def test_default_head_agrees_with_the_rules_on_unseen_speech_and_rests_in_silence(capsys):
    from motion.face.synth_data import HELD_OUT_VOICES, random_utterance

    model = ExpressionModel.load()
    rng = np.random.default_rng(987654)  # sentences the head never saw, in voices it never heard
    preds, tgts = [], []
    for i in range(8):
        u = random_utterance(rng, HELD_OUT_VOICES, augmented=False)
        preds.append(model.audio_to_frames(u.audio, num_frames=len(u.targets)))
        tgts.append(u.targets)
    pred, tgt = np.concatenate(preds), np.concatenate(tgts)
    r = {n: float(np.corrcoef(pred[:, INDEX[n]], tgt[:, INDEX[n]])[0, 1]) for n in KEY_SHAPES}
    with capsys.disabled():
        print("\ndefault head vs rule targets on unseen eSpeak speech, Pearson r: "
              + ", ".join(f"{n} {v:.3f}" for n, v in r.items()))
    assert min(r.values()) > 0.7  # measured with the shipped head: 0.92 / 0.86 / 0.90 / 0.85

    silence = np.random.default_rng(0).standard_normal(3 * 44100).astype(np.float32) * 1e-4  # -80 dB hiss
    for audio in (np.zeros(3 * 44100, np.float32), silence):
        f = model.audio_to_frames(audio)
        assert f.shape == (180, 61)
        assert f[:, INDEX["JawOpen"]].max() < 0.08
        assert f[:, [INDEX["MouthFunnel"], INDEX["MouthPucker"]]].max() < 0.1


def test_z_head_faces_follow_the_pieces_and_keep_pauses_neutral(tmp_path):
    import torch

    from bert_vits2.results import PieceOutput, join_pieces
    from motion.face.api import FaceMaker
    from motion.face.heads import ZHead
    from motion.face.postprocess import clamp

    torch.manual_seed(0)
    head = ZHead(in_channels=8, use_transformer=False, rnn_hidden=8, rnn_layers=1, mlp_hidden=8).eval()
    model = ExpressionModel(head, {"head_config": head.config}, tmp_path / "V_x.pth")
    rng = np.random.default_rng(0)
    parts = []
    for n, pause in ((50, 0.5), (30, 0.0)):
        parts.append(PieceOutput(audio=rng.standard_normal(n * 512).astype(np.float32) * 0.1, phones=["a"],
                                 durations=np.array([n * 512 / 44100]), phone_langs=["zh"], pause_after_s=pause,
                                 z=rng.standard_normal((8, n)).astype(np.float32)))
    result = join_pieces(parts, 44100, hop=512)
    maker = FaceMaker(tmp_path / "V_x.pth", blink=False, model=model)
    face = maker.for_result(result)
    assert face.source.startswith("trained z head")
    assert face.frames.shape == (math.ceil(result.duration_s * 60 - 1e-6), 61)
    d1 = result.pieces[0]["end_s"]
    in_pause = [i for i in range(len(face.frames)) if d1 + 0.03 < (i + 0.5) / 60 < result.pieces[1]["start_s"] - 0.03]
    assert in_pause and np.all(face.frames[in_pause] == 0)
    first = model.z_to_frames(parts[0].z, fps=60, num_frames=math.ceil(d1 * 60 - 1e-6))
    k = int(d1 * 60) - 1
    np.testing.assert_allclose(face.frames[:k], clamp(first)[:k], atol=1e-5)


def test_web_ui_audio_tab_gives_the_same_curves_as_wav_to_visemes(speech, tmp_path):
    from motion import wav_to_visemes
    from motion.webui.app import Handlers, WebUIConfig, WebUIState

    audio, sr = speech
    wav = tmp_path / "clip.wav"
    sf.write(wav, audio, sr, subtype="PCM_16")
    assert wav_to_visemes.main([str(wav), "-o", str(tmp_path / "cli"), "-q"]) == 0
    cli = np.load(tmp_path / "cli" / "clip.v.npy")
    h = Handlers(WebUIState(WebUIConfig(outputs_dir=str(tmp_path / "ui"))))
    _wav, _png, files, _md, last = h.audio_to_face(str(wav), "Demo voice (eSpeak NG)")
    ui = np.load(last["npy"])
    assert ui.shape == cli.shape
    np.testing.assert_array_equal(ui, cli)


def test_release_checkpoint_without_enc_q_is_refused_for_z_extraction(bv2_ref, tmp_path):
    from bert_vits2.release import make_release_checkpoint
    from motion import wav_to_visemes
    from motion.face.features import PosteriorEncoderError, load_posterior_from_checkpoint

    release = make_release_checkpoint(bv2_ref / "config.json", bv2_ref / "G_ref.pth", tmp_path / "G_ref_release.pth")
    with pytest.raises(PosteriorEncoderError, match="G_ref_release.pth") as err:
        load_posterior_from_checkpoint(bv2_ref / "config.json", release)
    assert "enc_q" in str(err.value) or "posterior" in str(err.value)
    rc = wav_to_visemes.main(["--export-posterior", str(tmp_path / "post.pth"), "--g-checkpoint", str(release),
                              "-c", str(bv2_ref / "config.json"), "-q"])
    assert rc == 1 and not (tmp_path / "post.pth").exists()


def test_out_dir_that_is_a_file_is_refused_in_one_line(speech, tmp_path, capsys):
    from motion import wav_to_visemes

    audio, sr = speech
    sf.write(tmp_path / "a.wav", audio, sr)
    (tmp_path / "out").write_text("a file")
    assert wav_to_visemes.main([str(tmp_path / "a.wav"), "-o", str(tmp_path / "out"), "-q"]) == 1
    err = capsys.readouterr().err
    assert "--out-dir" in err and "Traceback" not in err and (tmp_path / "out").read_text() == "a file"
