"""Issue 13: tools never write over their inputs, and untrusted .npy headers are checked before any allocation."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from bert_vits2.preprocess import resample_folder
from motion import tts2ue, vmc_cli
from motion.cli import refuse_overwriting_inputs
from motion.inputs import load_npy


def _face(tmp_path):
    p = tmp_path / "face.npy"
    np.save(p, np.full((30, 61), 0.2, np.float32))
    return p


def test_tts2ue_dry_run_refuses_its_inputs(tmp_path, capsys):
    face = _face(tmp_path)
    before = face.read_bytes()
    rc = tts2ue.main([f"--npy={face}", "--fps", "60", "--no-audio", "--virtual-clock", "--dry-run", str(face)])
    assert rc == 1
    err = capsys.readouterr().err
    assert "--dry-run" in err and "is the input --bs_npy_file" in err and "Traceback" not in err
    assert face.read_bytes() == before
    # a take's own files count as inputs too
    take = tmp_path / "t"
    np.save(take.with_suffix(".npy"), np.zeros((5, 61), np.float32))
    rc = tts2ue.main([str(take), "--fps", "60", "--no-audio", "--virtual-clock", "--dry-run", str(take) + ".npy"])
    assert rc == 1 and "take file t.npy" in capsys.readouterr().err
    # another output name works
    out = tmp_path / "sent.jsonl"
    assert tts2ue.main([f"--npy={face}", "--fps", "60", "--no-audio", "--virtual-clock", "--dry-run", str(out)]) == 0
    assert out.read_text().count("\n") > 0


def test_vmc_cli_bvh_and_dry_run_refuse_inputs(tmp_path, capsys):
    body = tmp_path / "walk.npy"
    np.save(body, np.zeros((10, 22, 3), np.float32))
    before = body.read_bytes()
    assert vmc_cli.main([str(body), "--bvh", str(body)]) == 2
    assert "--bvh" in capsys.readouterr().err
    face = _face(tmp_path)
    assert vmc_cli.main(["--face", str(face), "--dry-run", str(face)]) == 2
    err = capsys.readouterr().err
    assert "--dry-run" in err and "is the input --face" in err
    assert body.read_bytes() == before


def test_refuse_overwriting_inputs_sees_through_other_spellings(tmp_path):
    f = tmp_path / "a.npy"
    f.write_bytes(b"x")
    with pytest.raises(ValueError, match="is the input --x"):
        refuse_overwriting_inputs("--out", tmp_path / "sub" / ".." / "a.npy", [("--x", f)])
    refuse_overwriting_inputs("--out", tmp_path / "b.npy", [("--x", f), ("--y", None)])


def _wav(path, sr=22050, ch=1):
    path.parent.mkdir(parents=True, exist_ok=True)
    data = 0.1 * np.sin(np.arange(sr // 2) * 0.05)
    sf.write(path, np.stack([data] * ch, 1) if ch > 1 else data, sr)


def test_resample_refuses_out_dir_equal_to_in_dir(tmp_path):
    raw = tmp_path / "raw"
    _wav(raw / "a.wav")
    before = (raw / "a.wav").read_bytes()
    for overwrite in (False, True):
        with pytest.raises(ValueError, match="is the --in-dir"):
            resample_folder(raw, tmp_path / "raw" / "." , 44100, processes=1, overwrite=overwrite, progress=False)
    assert (raw / "a.wav").read_bytes() == before


def test_resample_redoes_outputs_at_another_rate_and_skips_its_own_outputs(tmp_path):
    raw = tmp_path / "raw"
    _wav(raw / "a.wav")
    out = tmp_path / "wavs"
    _wav(out / "a.wav", sr=16000)  # an earlier run at another rate: not "done"
    s = resample_folder(raw, out, 44100, processes=1, progress=False)
    assert s.done == 1 and s.skipped == 0 and sf.info(str(out / "a.wav")).samplerate == 44100
    assert resample_folder(raw, out, 44100, processes=1, progress=False).skipped == 1
    inner = raw / "out"  # outputs inside the input folder are never taken for inputs on the next run
    resample_folder(raw, inner, 44100, processes=1, progress=False)
    again = resample_folder(raw, inner, 44100, processes=1, progress=False)
    assert again.skipped == 1 and again.done == 0 and not (inner / "out").exists()


def test_resample_cli_says_one_line(tmp_path, capsys):
    import resample

    raw = tmp_path / "raw"
    _wav(raw / "a.wav")
    assert resample.main(["--in-dir", str(raw), "--out-dir", str(raw), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out-dir") and err.count("\n") == 1


def _npy_with_header(path, shape, dtype="<f4", payload=b"\0" * 64):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    path.write_bytes(buf.getvalue() + payload)
    return path


def test_npy_headers_declaring_huge_shapes_are_refused(tmp_path, capsys):
    huge = _npy_with_header(tmp_path / "huge.npy", (10**11, 61))
    with pytest.raises(ValueError, match="header declares shape"):
        load_npy(huge)
    with pytest.raises(ValueError, match="header declares shape"):
        load_npy(_npy_with_header(tmp_path / "short.npy", (1000, 61)))  # truncated file
    with pytest.raises(ValueError, match="pickle"):
        load_npy(_npy_with_header(tmp_path / "obj.npy", (2,), dtype="|O"))
    with pytest.raises(ValueError, match="not a readable"):
        load_npy(tmp_path.joinpath("junk.npy").write_bytes(b"garbage") and tmp_path / "junk.npy")
    ok = _face(tmp_path)
    assert load_npy(ok).shape == (30, 61)
    assert tts2ue.main([f"--npy={huge}", "--fps", "60", "--no-audio", "--virtual-clock", "--dry-run",
                        str(tmp_path / "o.jsonl")]) == 1
    assert "header declares shape" in capsys.readouterr().err
    assert vmc_cli.main(["--face", str(huge), "--dry-run", str(tmp_path / "o.jsonl")]) == 2
