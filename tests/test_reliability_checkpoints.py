"""Checkpoint reliability: a step's G/D/DUR/WD set is complete or absent (exceptions, SIGKILL), stale temp files are
cleaned, code-running pickles and size bombs are refused with one line before anything big is allocated."""

from __future__ import annotations

import collections
import errno
import io
import os
import pickle
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import checkout_env
from torch import nn

from bert_vits2 import checkpoint_files as ckpt_mod
from bert_vits2.checkpoint import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from bert_vits2.checkpoint_files import complete_checkpoint_steps, remove_stale_checkpoint_temps, save_checkpoint_set

REPO = Path(__file__).resolve().parents[1]


def _nets() -> dict[str, tuple[nn.Module, torch.optim.Optimizer]]:
    torch.manual_seed(0)
    out = {}
    for prefix, width in (("G", 6), ("D", 5), ("DUR", 4), ("WD", 3)):
        net = nn.Linear(width, width)
        out[prefix] = (net, torch.optim.AdamW(net.parameters(), lr=1e-3))
    return out


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.slow
def test_set_is_written_completely_and_loads(tmp_path: Path) -> None:
    nets = _nets()
    paths = save_checkpoint_set(tmp_path, 8, nets, 2e-4, 3)
    assert [p.name for p in paths] == ["G_8.pth", "D_8.pth", "DUR_8.pth", "WD_8.pth"]
    assert _names(tmp_path) == ["DUR_8.pth", "D_8.pth", "G_8.pth", "WD_8.pth"]  # no temp left
    for prefix, (net, opt) in nets.items():
        data = read_checkpoint(tmp_path / f"{prefix}_8.pth")
        assert set(data) == {"model", "iteration", "optimizer", "learning_rate"} and data["iteration"] == 3
        fresh = type(net)(net.in_features, net.out_features)
        load_checkpoint(tmp_path / f"{prefix}_8.pth", fresh, strict=True)
        assert torch.equal(fresh.weight, net.weight)
    assert complete_checkpoint_steps(tmp_path) == [8]


def test_set_is_absent_when_a_write_fails(tmp_path: Path, monkeypatch) -> None:
    nets = _nets()
    save_checkpoint_set(tmp_path, 4, nets, 2e-4, 1)
    written = []

    def disk_full_on_dur(obj, f, path):
        written.append(path.name)
        if path.name == "DUR_8.pth":
            f.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        torch.save(obj, f)

    monkeypatch.setattr(ckpt_mod, "_write_checkpoint", disk_full_on_dur)
    with pytest.raises(OSError) as info:
        save_checkpoint_set(tmp_path, 8, nets, 2e-4, 2)
    assert info.value.errno == errno.ENOSPC
    assert written == ["G_8.pth", "D_8.pth", "DUR_8.pth"]  # G and D were fully written first
    assert _names(tmp_path) == ["DUR_4.pth", "D_4.pth", "G_4.pth", "WD_4.pth"]  # nothing of step 8, no temp
    assert complete_checkpoint_steps(tmp_path) == [4]


def test_complete_steps_ignore_partial_sets(tmp_path: Path) -> None:
    for name in ("G_2.pth", "D_2.pth", "DUR_2.pth", "WD_2.pth", "G_6.pth", "D_6.pth", "D_9.pth", "WD_9.pth"):
        (tmp_path / name).write_bytes(b"x")
    assert complete_checkpoint_steps(tmp_path) == [2]
    assert complete_checkpoint_steps(tmp_path, ("G", "D")) == [6, 2]


_KILLER = textwrap.dedent("""
    import os, signal, sys, torch
    from torch import nn
    from bert_vits2 import checkpoint_files as ckpt
    folder = sys.argv[1]
    nets = {}
    for prefix in ("G", "D", "DUR", "WD"):
        net = nn.Linear(64, 64)
        nets[prefix] = (net, torch.optim.AdamW(net.parameters()))
    ckpt.save_checkpoint_set(folder, 4, nets, 2e-4, 1)          # a complete earlier set

    def write_then_die(obj, f, path):
        if path.name == "D_8.pth":
            f.write(b"half of a checkpoint")
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)                  # exactly while D_8 is being written
        torch.save(obj, f)

    ckpt._write_checkpoint = write_then_die
    ckpt.save_checkpoint_set(folder, 8, nets, 2e-4, 2)
    print("not reached")
""")


@pytest.mark.slow
def test_sigkill_during_a_save_leaves_no_published_file_and_temps_are_cleaned(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", _KILLER, str(tmp_path)], cwd=tmp_path, env=checkout_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert "not reached" not in proc.stdout
    names = _names(tmp_path)
    published = [n for n in names if not n.startswith(".")]
    temps = [n for n in names if n.startswith(".")]
    assert published == ["DUR_4.pth", "D_4.pth", "G_4.pth", "WD_4.pth"]
    assert sorted(t.split(".pth.")[0] for t in temps) == [".D_8", ".G_8"] and all(t.endswith(".tmp") for t in temps)
    assert complete_checkpoint_steps(tmp_path) == [4]
    removed = remove_stale_checkpoint_temps(tmp_path)
    assert sorted(p.name for p in removed) == sorted(temps)
    assert _names(tmp_path) == published


# ---------------------------------------------------------------------------------------------------
# Refused files

def _assert_one_line_refusal(path: Path, pattern: str) -> str:
    with pytest.raises(CheckpointError, match=pattern) as info:
        read_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_blocked_module_global_is_called_unsafe_not_damaged(tmp_path: Path) -> None:
    path = tmp_path / "G_1.pth"
    torch.save({"model": {"w": torch.ones(2)}, "hook": os.system}, path)  # torch 2.13: "... whose module posix is blocked"
    with pytest.raises(pickle.UnpicklingError, match="whose module .* is blocked"):
        torch.load(path, weights_only=True)  # the torch text this test is about
    message = _assert_one_line_refusal(path, r"refused for safety: the file contains code/objects \((posix|os)\.system\)")
    assert "damaged" not in message and "truncated" not in message


class _Storage:
    def __init__(self, numel: int) -> None:
        self.numel = numel


class _Tensor:
    """Pickles as torch's tensor rebuild over storage record 0 (what torch.save writes), without any data."""

    def __init__(self, numel: int) -> None:
        self.storage, self.numel = _Storage(numel), numel

    def __reduce_ex__(self, protocol):
        return (torch._utils._rebuild_tensor_v2,
                (self.storage, 0, (self.numel,), (1,), False, collections.OrderedDict()))


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            return ("storage", torch.FloatStorage, "0", "cpu", obj.numel)
        return None


def _bomb(path: Path, record_bytes: int, declared_bytes: int) -> None:
    """A torch-format zip whose one float tensor declares ``declared_bytes`` and whose storage record holds
    ``record_bytes`` zeros, deflate-compressed (about 1000:1)."""
    buf = io.BytesIO()
    _Pickler(buf, protocol=2).dump({"model": {"enc_p.emb.weight": _Tensor(declared_bytes // 4)}, "iteration": 0})
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", buf.getvalue())
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/version", "3\n")
        info = zipfile.ZipInfo("archive/data/0")
        info.compress_type = zipfile.ZIP_DEFLATED
        chunk = bytes(1 << 20)
        with archive.open(info, "w", force_zip64=True) as f:
            for _ in range(record_bytes >> 20):
                f.write(chunk)


def test_compressed_size_bomb_is_refused_before_loading(tmp_path: Path, monkeypatch) -> None:
    bomb = tmp_path / "G_1.pth"
    _bomb(bomb, 256 << 20, 256 << 20)
    assert bomb.stat().st_size < 2 << 20
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("map_location"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    _assert_one_line_refusal(bomb, r"refused before loading: it declares 256\.0 MB of tensor data but the file is only "
                                   r"[\d.]+ KB \(compressed tensor records")
    assert calls == ["meta"]  # only the shape-only pass ran: nothing was materialised


def test_pickle_declaring_more_than_its_record_is_refused(tmp_path: Path) -> None:
    bomb = tmp_path / "G_2.pth"
    _bomb(bomb, 1 << 20, 17 << 30)  # the pickle asks for a 17 GB tensor over a 1 MB record
    _assert_one_line_refusal(bomb, r"declares 17\.0 GB of tensor data but the file is only")


def test_declared_size_is_checked_against_the_model(tmp_path: Path) -> None:
    big = tmp_path / "G_3.pth"
    save_checkpoint(nn.Linear(512, 512), None, 2e-4, 1, big)  # 1 MB of weights, a genuine file
    assert read_checkpoint(big)["model"]["weight"].shape == (512, 512)
    with pytest.raises(CheckpointError, match=r"G_3\.pth: refused before loading: it declares 1\.0 MB of tensor data, "
                                              r"more than this model can use \(100 B"):
        read_checkpoint(big, max_bytes=100)
