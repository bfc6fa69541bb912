"""--head loading (motion/face/model.py through bert_vits2.checkpoint.read_checkpoint): damaged or hostile files end
in one HeadLoadError line naming the file, never raw torch text, and code in a pickle never runs."""

from __future__ import annotations

import os

import pytest
import torch

from motion.face.model import HeadLoadError, default_head_path, load_head_checkpoint


class _RunsCode:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _one_line(err: BaseException, path) -> str:
    text = str(err)
    assert str(path) in text and "\n" not in text.strip()
    for raw in ("Weights only load failed", "_pickle.UnpicklingError", "PytorchStreamReader", "Traceback"):
        assert raw not in text, text
    return text


def test_garbage_file(tmp_path):
    p = tmp_path / "V_1.pth"
    p.write_bytes(os.urandom(2048))
    with pytest.raises(HeadLoadError) as exc:
        load_head_checkpoint(p)
    _one_line(exc.value, p)


def test_pickle_with_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    p = tmp_path / "V_2.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "head_config": {"type": "mel"}, "x": _RunsCode(str(marker))}, p)
    with pytest.raises(HeadLoadError) as exc:
        load_head_checkpoint(p)
    _one_line(exc.value, p)
    assert not marker.exists()


def test_truncated_head(tmp_path):
    src = default_head_path()
    if not src.is_file():
        pytest.skip("the shipped default head is not present")
    data = src.read_bytes()
    p = tmp_path / "V_3.pth"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(HeadLoadError) as exc:
        load_head_checkpoint(p)
    _one_line(exc.value, p)
    model, ckpt = load_head_checkpoint(src)  # the intact file still loads
    assert "head_config" in ckpt


def test_not_a_head(tmp_path):
    p = tmp_path / "V_4.pth"
    torch.save({"model": {"w": torch.zeros(1)}}, p)
    with pytest.raises(HeadLoadError, match="not an expression-head checkpoint"):
        load_head_checkpoint(p)
