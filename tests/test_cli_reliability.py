"""Issue 24 items 2, 5, 6: tools never write over their inputs (any spelling: same path, symlink, hard link), bad
options and files get one line instead of a traceback, and nonsense is refused instead of silently done."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

TRACEBACK = "Traceback (most recent call last)"


def _digest(*paths: Path) -> list[str]:
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]


@pytest.fixture(scope="module")
def voice(tmp_path_factory, bv2_ref) -> dict[str, Path]:
    """A small G checkpoint (the reference config's sizes) and its config, built once for the module."""
    from bert_vits2.checkpoint import save_checkpoint
    from bert_vits2.hparams import HParams
    from bert_vits2.models import SynthesizerTrn

    root = tmp_path_factory.mktemp("voice")
    cfg = json.loads((bv2_ref / "config.json").read_text())
    (root / "config.json").write_text(json.dumps(cfg, indent=1))
    hps = HParams(cfg)
    torch.manual_seed(0)
    net = SynthesizerTrn(112, hps.data.filter_length // 2 + 1, hps.train.segment_size // hps.data.hop_length,
                         n_speakers=hps.data.n_speakers, **hps.model)
    save_checkpoint(net, None, None, 7, root / "G_7.pth")
    return {"G": root / "G_7.pth", "config": root / "config.json"}


def _workdir(tmp_path: Path, voice: dict[str, Path]) -> Path:
    for p in voice.values():
        shutil.copy(p, tmp_path / p.name)
    sf.write(tmp_path / "a.wav", (0.2 * np.sin(np.arange(22050) * 0.05)).astype(np.float32), 44100)
    (tmp_path / "esd.list").write_text("".join(f"a.wav|bob|EN|Hello number {i}.\n" for i in range(8)))
    np.save(tmp_path / "face.npy", np.full((30, 61), 0.2, np.float32))
    return tmp_path


def _main(script: str):
    import importlib

    return importlib.import_module(script).main


# (tool, argv, the input that must survive); {x} is a file in the work folder, {link:x} a hard link to it
CLOBBER = [
    ("motion.wav_to_visemes", "--g-checkpoint G_7.pth -c config.json --export-posterior G_7.pth", "G_7.pth"),
    ("motion.wav_to_visemes", "--g-checkpoint G_7.pth -c config.json --export-posterior config.json", "config.json"),
    ("motion.wav_to_visemes", "--g-checkpoint G_7.pth -c config.json --export-posterior {link:G_7.pth}", "G_7.pth"),
    ("compress_model", "-i G_7.pth -c config.json -o config.json", "config.json"),
    ("compress_model", "-i G_7.pth -c config.json -o ./sub/../G_7.pth", "G_7.pth"),
    ("preprocess_text", "--transcription-path esd.list --config-path config.json --val-path config.json",
     "config.json"),
    ("preprocess_text", "--transcription-path esd.list --config-path config.json --train-path esd.list", "esd.list"),
    ("preprocess_text", "--transcription-path esd.list --config-path config.json --cleaned-path {link:esd.list}",
     "esd.list"),
    ("preprocess_text", "--transcription-path esd.list --config-path config.json --train-path t.list --val-path t.list",
     "esd.list"),
    ("motion.render_face", "face.npy --fps 60 -o {link:face.npy}", "face.npy"),
    ("export_onnx", "--checkpoint onnx/V/V_dec.onnx -c config.json -o onnx -n V", "onnx/V/V_dec.onnx"),
]


@pytest.mark.parametrize("tool,args,keep", CLOBBER, ids=[f"{t}:{a}"[:80] for t, a, _ in CLOBBER])
def test_an_output_that_is_an_input_is_refused(tool, args, keep, voice, tmp_path, monkeypatch, capsys):
    work = _workdir(tmp_path, voice)
    monkeypatch.chdir(work)
    (work / "sub").mkdir()
    if keep.startswith("onnx/"):
        (work / "onnx" / "V").mkdir(parents=True)
        shutil.copy(work / "G_7.pth", work / keep)
    argv = []
    for a in args.split():
        if a.startswith("{link:"):
            name = a[6:-1]
            os.link(work / name, work / f"link-{name}")
            a = f"link-{name}"
        argv.append(a)
    extra = ["--quiet", "--allow-tokenizer-fallback"] if tool == "preprocess_text" else []
    before = _digest(work / keep, work / "esd.list", work / "config.json")
    rc = _main(tool)(argv + extra)
    err = capsys.readouterr().err
    assert rc != 0, err
    assert TRACEBACK not in err and ("is the input" in err or "is also the" in err or "overwrite an input" in err), err
    assert _digest(work / keep, work / "esd.list", work / "config.json") == before


def test_tools_that_already_refused_use_the_shared_helper(tmp_path):
    """tts2ue/vmc_cli/plot_take go through motion.cli, which is now bert_vits2.fileio's check (symlinks too)."""
    from bert_vits2.fileio import OutputIsInputError, refuse_overwriting_inputs
    from motion.cli import refuse_overwriting_inputs as cli_refuse

    f = tmp_path / "a.npy"
    f.write_bytes(b"x")
    (tmp_path / "s.npy").symlink_to(f)
    with pytest.raises(OutputIsInputError, match="--dry-run .* is the input --npy"):
        cli_refuse("--dry-run", tmp_path / "s.npy", [("--npy", f)])
    with pytest.raises(OutputIsInputError):
        refuse_overwriting_inputs({"--out": tmp_path / "missing" / ".." / "a.npy"}, {"--in": f})
    refuse_overwriting_inputs({"--out": tmp_path / "b.npy", "--log": None}, {"--in": f, "--opt": None})


# --- item 5: one line instead of a traceback; item 6: nonsense refused ---


def _one_line_error(capsys, rc, code=None):
    err = capsys.readouterr().err
    assert rc != 0 if code is None else rc == code, err
    assert TRACEBACK not in err and err.strip(), err
    return err


def test_plot_take_with_a_junk_wav(tmp_path, capsys):
    from motion import plot_take

    np.save(tmp_path / "face.npy", np.full((30, 61), 0.2, np.float32))
    (tmp_path / "junk.wav").write_bytes(os.urandom(3000))
    rc = plot_take.main([str(tmp_path / "face.npy"), "--fps", "60", "--wav", str(tmp_path / "junk.wav"),
                         "--out", str(tmp_path / "p.png")])
    assert "junk.wav" in _one_line_error(capsys, rc, 1)


@pytest.mark.parametrize("argv", [["--num-workers", "-3"], ["--max-steps", "-1"], ["--max-steps", "0"],
                                  ["--keep-ckpts", "-2"]])
def test_train_ms_refuses_negative_counts(argv, tmp_path, capsys):
    import train_ms

    with pytest.raises(SystemExit) as exc:
        train_ms.main(["-m", str(tmp_path / "m"), *argv])
    assert exc.value.code == 2 and argv[0] in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_bert_gen_names_a_list_that_is_not_utf8(tmp_path, capsys, bv2_ref):
    import bert_gen

    bad = tmp_path / "junk.list"
    bad.write_bytes(b"a.wav|bob|EN|caf\xe9 \xff\xfe|x\n")
    rc = bert_gen.main(["-c", str(bv2_ref / "config.json"), "--lists", str(bad), "--quiet"])
    err = _one_line_error(capsys, rc, 2)
    assert "junk.list" in err and "UTF-8" in err


def test_export_onnx_out_file_and_name_with_folders(voice, tmp_path, capsys):
    import export_onnx

    face = tmp_path / "face.npy"
    np.save(face, np.zeros((3, 61), np.float32))
    before = _digest(face)
    rc = export_onnx.main(["--checkpoint", str(voice["G"]), "-c", str(voice["config"]), "-o", str(face)])
    assert "is a file" in _one_line_error(capsys, rc, 2) and _digest(face) == before
    for name in ("../../escape", "a/b", "..", " "):
        with pytest.raises(SystemExit) as exc:
            export_onnx.main(["--checkpoint", str(voice["G"]), "-c", str(voice["config"]), "-o",
                              str(tmp_path / "o" / "p"), "-n", name])
        assert exc.value.code == 2 and "plain name" in capsys.readouterr().err
    assert not (tmp_path / "escape").exists() and not (tmp_path / "o").exists()


@pytest.mark.parametrize("script", ["webui", "webui_preprocess"])
@pytest.mark.parametrize("host", ["999.1.1.1", "8.8.8.8", "no such host!"])
def test_web_uis_refuse_a_host_they_cannot_listen_on(script, host, capsys):
    rc = _main(script)(["--host", host])
    assert "--host" in _one_line_error(capsys, rc, 2)


def test_webui_names_what_is_wrong_with_a_voice_it_was_given(tmp_path, capsys, monkeypatch):
    import webui

    monkeypatch.chdir(tmp_path)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(os.urandom(4096))
    rc = webui.main(["--checkpoint", str(junk)])
    assert "config.json" in _one_line_error(capsys, rc, 2)  # no config for it: said, not the demo voice
    rc = webui.main(["-m", str(junk)])
    assert "is a file, not a folder" in _one_line_error(capsys, rc, 2)
    (tmp_path / "bad.json").write_text("{not json")
    rc = webui.main(["--checkpoint", str(junk), "-c", str(tmp_path / "bad.json")])
    assert "bad.json" in _one_line_error(capsys, rc, 2)


def test_tts2ue_refuses_an_empty_clip_and_non_float_curves(tmp_path, capsys):
    from motion import tts2ue

    for name, arr, says in (("empty.npy", np.zeros((0, 61), np.float32), "no frames"),
                            ("ints.npy", np.ones((30, 61), np.int64), "int64"),
                            ("complex.npy", np.ones((30, 61), np.complex64), "complex64")):
        np.save(tmp_path / name, arr)
        rc = tts2ue.main([f"--npy={tmp_path / name}", "--fps", "60", "--no-audio", "--virtual-clock", "--dry-run",
                          str(tmp_path / "o.jsonl")])
        assert says in _one_line_error(capsys, rc, 1)
    assert not (tmp_path / "o.jsonl").exists()


def test_record_import_of_a_header_only_csv_is_refused(tmp_path, capsys):
    from motion import record
    from motion.arkit import NAMES

    csv = tmp_path / "Slate_1_iPhone.csv"
    csv.write_text("Timecode,BlendShapeCount," + ",".join(NAMES) + "\n")
    out = tmp_path / "rec"
    rc = record.main(["--import", str(csv), "--out-dir", str(out)])
    assert "no face frames" in _one_line_error(capsys, rc, 1)
    assert not [p for p in out.iterdir() if not p.name.startswith(".")]


def test_visemes_resume_from_a_file_that_is_not_weights(tmp_path):
    from motion.face import train as face_train

    model_dir = tmp_path / "models"
    model_dir.mkdir()
    (model_dir / "V_3.pth").write_bytes(os.urandom(2048))
    config = {"type": "mel", "n_mels": 80}
    with pytest.raises(face_train.TrainError, match=r"V_3\.pth: .*--no-resume"):
        face_train._setup_or_resume(config, 1e-3, model_dir, face_train.TrainOptions(), {}, None)


def test_bert_and_wavlm_messages_never_advise_weights_only_false(tmp_path):
    from bert_vits2.text.bert import load_failure_reason

    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    torch.save({"w": Evil()}, tmp_path / "pytorch_model.bin")
    with pytest.raises(Exception) as exc:
        torch.load(tmp_path / "pytorch_model.bin", weights_only=True)
    assert "weights_only" in str(exc.value)  # torch's own text carries the advice...
    reason = load_failure_reason(exc.value)
    assert "weights_only" not in reason and "could run code" in reason  # ...ours does not
