"""bert_vits2.checkpoint: upstream checkpoint format, forgiving/strict loading, safe reading, folders, inference loader."""

from __future__ import annotations

import logging
import os
import pickle
import pickletools
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from bert_vits2.checkpoint import (
    CheckpointError,
    CheckpointNotFoundError,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from bert_vits2.checkpoint_files import checkpoint_step, latest_checkpoint_path, prune_checkpoints
from bert_vits2.hparams import load_hparams
from bert_vits2.inference import load_model_for_inference

# upstream's legacy weight norm is deprecated in torch but is what its checkpoints are made of
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.nn.utils.weight_norm.*is deprecated:FutureWarning")

with_legacy_wn = torch.nn.utils.weight_norm  # the legacy API upstream uses (weight_g / weight_v keys)


class TinyNet(nn.Module):
    """Stand-in with the features that matter for checkpoints: legacy weight norm (incl. ConvTranspose), emb_g, buffers."""

    def __init__(self, n_speakers: int = 3, gin: int = 4) -> None:
        super().__init__()
        self.pre = nn.Conv1d(2, 4, 3)
        self.ups = nn.ModuleList([with_legacy_wn(nn.ConvTranspose1d(4, 2, 4, 2)), with_legacy_wn(nn.Conv1d(2, 2, 3))])
        self.norm = nn.BatchNorm1d(2)
        self.emb_g = nn.Embedding(n_speakers, gin)


def _optimizer(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=2e-4, betas=(0.8, 0.99), eps=1e-9)


def _trained(seed: int = 0, n_speakers: int = 3) -> tuple[TinyNet, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = TinyNet(n_speakers)
    opt = _optimizer(model)
    loss = sum(p.square().sum() for p in model.parameters())
    loss.backward()
    opt.step()
    model.norm.running_mean += 0.5  # a buffer differing from its init
    return model, opt


def _assert_same_state(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for key in a:
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


# ---------------------------------------------------------------------------------------------------
# Stand-in model: format, round trip, forgiving and strict loading

@pytest.mark.slow
def test_save_format_and_bit_identical_round_trip(tmp_path: Path) -> None:
    model, opt = _trained()
    path = tmp_path / "G_100.pth"
    save_checkpoint(model, opt, 2e-4, 12, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["G_100.pth"]  # temp file replaced, none left
    raw = torch.load(path, weights_only=True, map_location="cpu")
    assert list(raw) == ["model", "iteration", "optimizer", "learning_rate"]
    assert raw["iteration"] == 12 and raw["learning_rate"] == 2e-4
    assert "ups.0.weight_g" in raw["model"] and "ups.0.weight_v" in raw["model"]
    assert raw["model"]["ups.0.weight_g"].shape == (4, 1, 1)  # ConvTranspose: norm over the in-channel dim
    assert not any(k.startswith("module.") for k in raw["model"])

    torch.manual_seed(1)
    fresh = TinyNet()
    fresh_opt = _optimizer(fresh)
    result = load_checkpoint(path, fresh, fresh_opt)
    got_model, got_opt, lr, iteration = result  # upstream's 4-tuple
    assert got_model is fresh and got_opt is fresh_opt and lr == 2e-4 and iteration == 12
    assert result.report.clean and result.report.optimizer_loaded and result.report.loaded == len(raw["model"])
    _assert_same_state(fresh.state_dict(), model.state_dict())
    for p_new, p_old in zip(fresh.parameters(), model.parameters()):
        for name in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(fresh_opt.state[p_new][name], opt.state[p_old][name])
    # saving the loaded model again gives the same tensors
    save_checkpoint(fresh, fresh_opt, lr, iteration, tmp_path / "again.pth")
    _assert_same_state(torch.load(tmp_path / "again.pth", weights_only=True)["model"], raw["model"])


def test_wrapped_model_saved_without_module_prefix(tmp_path: Path) -> None:
    model, opt = _trained()
    wrapped = nn.DataParallel(model)  # same `.module` wrapping as DistributedDataParallel
    assert all(k.startswith("module.") for k in wrapped.state_dict())
    save_checkpoint(wrapped, opt, 2e-4, 3, tmp_path / "G_3.pth")
    saved = torch.load(tmp_path / "G_3.pth", weights_only=True)["model"]
    _assert_same_state(saved, model.state_dict())
    # loading into a wrapped model and from a file whose keys carry `module.` both work
    prefixed = {"model": {"module." + k: v for k, v in saved.items()}, "iteration": 3, "optimizer": None,
                "learning_rate": 2e-4}
    torch.save(prefixed, tmp_path / "prefixed.pth")
    target = nn.DataParallel(TinyNet())
    result = load_checkpoint(tmp_path / "prefixed.pth", target, strict=True)
    assert result.report.clean and result.iteration == 3
    _assert_same_state(target.module.state_dict(), model.state_dict())


def test_parametrized_weight_norm_names_are_mapped(tmp_path: Path) -> None:
    """A model built with torch's new weight norm still reads and writes upstream's weight_g/weight_v names."""
    legacy, _ = _trained()
    save_checkpoint(legacy, None, 2e-4, 1, tmp_path / "legacy.pth")

    class NewStyle(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            wn = torch.nn.utils.parametrizations.weight_norm
            self.pre = nn.Conv1d(2, 4, 3)
            self.ups = nn.ModuleList([wn(nn.ConvTranspose1d(4, 2, 4, 2)), wn(nn.Conv1d(2, 2, 3))])
            self.norm = nn.BatchNorm1d(2)
            self.emb_g = nn.Embedding(3, 4)

    new = NewStyle()
    assert load_checkpoint(tmp_path / "legacy.pth", new, strict=True).report.clean
    assert torch.equal(new.ups[0].parametrizations.weight.original0, legacy.ups[0].weight_g)
    save_checkpoint(new, None, 2e-4, 1, tmp_path / "new.pth")
    _assert_same_state(torch.load(tmp_path / "new.pth", weights_only=True)["model"], legacy.state_dict())


def test_speaker_count_mismatch_keeps_init_and_reports(tmp_path: Path, caplog) -> None:
    model, opt = _trained(n_speakers=3)
    path = tmp_path / "G_0.pth"
    save_checkpoint(model, opt, 2e-4, 5, path)
    torch.manual_seed(7)
    target = TinyNet(n_speakers=5)
    target_opt = _optimizer(target)
    fresh_emb = target.emb_g.weight.detach().clone()
    with caplog.at_level(logging.WARNING, logger="bert_vits2.checkpoint"):
        result = load_checkpoint(path, target, target_opt)
    report = result.report
    assert report.mismatched == ["emb_g.weight"] and report.missing == [] and report.unexpected == []
    assert report.mismatched_shapes["emb_g.weight"] == ((3, 4), (5, 4)) and report.not_loaded == ["emb_g.weight"]
    assert torch.equal(target.emb_g.weight, fresh_emb)  # fresh init kept
    assert torch.equal(target.ups[0].weight_v, model.ups[0].weight_v)  # everything else loaded
    assert torch.equal(target.norm.running_mean, model.norm.running_mean)
    assert any("emb_g.weight" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    # the saved Adam moments of emb_g do not fit the new parameter: optimizer state is not loaded
    assert not report.optimizer_loaded and "shape" in report.optimizer_note and not target_opt.state

    with pytest.raises(CheckpointError, match=r"G_0\.pth: does not match the model .*emb_g\.weight \(3, 4\) in file vs \(5, 4\)"):
        load_checkpoint(path, TinyNet(n_speakers=5), strict=True)


def test_missing_and_unexpected_keys(tmp_path: Path) -> None:
    model, _ = _trained()
    state = model.state_dict()
    state.pop("pre.bias")
    state["old_layer.weight"] = torch.ones(2)
    torch.save({"model": state, "iteration": 9, "optimizer": None, "learning_rate": 1e-4}, tmp_path / "G_9.pth")
    target = TinyNet()
    fresh_bias = target.pre.bias.detach().clone()
    result = load_checkpoint(tmp_path / "G_9.pth", target)
    assert result.report.missing == ["pre.bias"] and result.report.unexpected == ["old_layer.weight"]
    assert torch.equal(target.pre.bias, fresh_bias) and torch.equal(target.pre.weight, model.pre.weight)
    assert result.iteration == 9 and result.learning_rate == 1e-4
    untouched = TinyNet()
    before = {k: v.clone() for k, v in untouched.state_dict().items()}
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path / "G_9.pth", untouched, strict=True)
    message = str(info.value)
    assert "\n" not in message and "missing 1: pre.bias" in message and "unexpected 1: old_layer.weight" in message
    _assert_same_state(untouched.state_dict(), before)  # strict failure changes nothing


def test_skip_optimizer_and_incompatible_optimizer(tmp_path: Path) -> None:
    model, opt = _trained()
    save_checkpoint(model, opt, 2e-4, 1, tmp_path / "G_1.pth")
    target = TinyNet()
    target_opt = _optimizer(target)
    result = load_checkpoint(tmp_path / "G_1.pth", target, target_opt, skip_optimizer=True)
    assert not result.report.optimizer_loaded and not target_opt.state
    other_opt = torch.optim.AdamW([target.pre.weight], lr=1e-3)  # another parameter layout
    result = load_checkpoint(tmp_path / "G_1.pth", target, other_opt)
    assert not result.report.optimizer_loaded and "parameters" in result.report.optimizer_note
    assert other_opt.param_groups[0]["lr"] == 1e-3


# ---------------------------------------------------------------------------------------------------
# Files that are not checkpoints

class _Payload:
    """Unpickling this runs code (writes a marker file): what a malicious "checkpoint" does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def _assert_refused(path: Path, pattern: str) -> None:
    with pytest.raises(CheckpointError, match=pattern) as info:
        read_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    error = info.value  # no torch traceback chained in
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)
    with pytest.raises(CheckpointError):
        load_checkpoint(path, TinyNet())


def test_malicious_pickles_do_not_execute(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    raw_pickle = tmp_path / "evil.pth"
    raw_pickle.write_bytes(pickle.dumps({"model": _Payload(marker)}, protocol=2))
    # prove the file really carries a code-running global (so the test could fail)
    globals_used = [arg for op, arg, _ in pickletools.genops(raw_pickle.read_bytes()) if op.name == "GLOBAL"]
    assert any("exec" in str(arg) for arg in globals_used)
    zipped = tmp_path / "evil_zip.pth"
    torch.save({"model": _Payload(marker), "iteration": 1}, zipped)  # torch's own zip format with the payload inside
    for path in (raw_pickle, zipped):
        _assert_refused(path, r"refused, not a plain-weights checkpoint: unpickling it would call exec")
    assert not marker.exists()


def test_damaged_and_foreign_files_are_refused(tmp_path: Path) -> None:
    model, opt = _trained()
    good = tmp_path / "good.pth"
    save_checkpoint(model, opt, 2e-4, 1, good)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(data[: len(data) // 2])
    _assert_refused(truncated, r"truncated\.pth: truncated checkpoint")
    text = tmp_path / "notes.pth"
    text.write_text("<html>404 Not Found</html>\n")
    _assert_refused(text, r"notes\.pth: a text file, not a PyTorch checkpoint")
    lfs = tmp_path / "lfs.pth"
    lfs.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 1\n")
    _assert_refused(lfs, "Git LFS pointer")
    other_zip = tmp_path / "other.pth"
    with zipfile.ZipFile(other_zip, "w") as archive:
        archive.writestr("readme.txt", "not weights")
    _assert_refused(other_zip, r"other\.pth: a zip archive but not a PyTorch checkpoint")
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    _assert_refused(empty, "empty file")
    no_model = tmp_path / "no_model.pth"
    torch.save({"weights": {"a": torch.ones(1)}}, no_model)
    _assert_refused(no_model, r"no_model\.pth: not a Bert-VITS2 checkpoint: expected a dict with a 'model' state dict")
    bare_tensor = tmp_path / "tensor.pth"
    torch.save(torch.ones(3), bare_tensor)
    _assert_refused(bare_tensor, "found a Tensor")
    legacy_truncated = tmp_path / "legacy.pth"
    torch.save({"model": model.state_dict()}, legacy_truncated, _use_new_zipfile_serialization=False)
    assert read_checkpoint(legacy_truncated)["model"].keys() == model.state_dict().keys()  # legacy format itself is fine
    legacy_truncated.write_bytes(legacy_truncated.read_bytes()[:300])
    with pytest.raises(CheckpointError, match=r"legacy\.pth: ") as info:
        read_checkpoint(legacy_truncated)
    assert "\n" not in str(info.value)
    with pytest.raises(CheckpointNotFoundError, match="missing.pth does not exist"):
        read_checkpoint(tmp_path / "missing.pth")


def test_save_is_atomic_when_writing_fails(tmp_path: Path, monkeypatch) -> None:
    model, opt = _trained()
    path = tmp_path / "G_5.pth"
    save_checkpoint(model, opt, 2e-4, 5, path)
    before = path.read_bytes()

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(model, opt, 2e-4, 6, path)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["G_5.pth"]


# ---------------------------------------------------------------------------------------------------
# Checkpoint folders

def test_latest_checkpoint_path_orders_numerically(tmp_path: Path) -> None:
    assert latest_checkpoint_path(tmp_path) is None
    for step in (900, 10000, 2000):
        (tmp_path / f"G_{step}.pth").write_bytes(b"x")
    (tmp_path / "D_99999.pth").write_bytes(b"x")
    assert latest_checkpoint_path(tmp_path) == str(tmp_path / "G_10000.pth")
    assert latest_checkpoint_path(tmp_path, "D_*.pth") == str(tmp_path / "D_99999.pth")
    assert checkpoint_step("logs/run2/G_8000.pth") == 8000 and checkpoint_step("G_latest.pth") is None


def test_prune_keeps_newest_per_kind_and_base_files(tmp_path: Path) -> None:
    steps = [1000, 2000, 3000, 4000]
    for prefix in ("G", "D", "DUR", "WD"):
        for i, step in enumerate([0, *steps]):
            path = tmp_path / f"{prefix}_{step}.pth"
            path.write_bytes(b"x")
            os.utime(path, (1_000_000 + i * 100,) * 2)
    (tmp_path / "G_4000.pth.bak").write_bytes(b"x")
    (tmp_path / "events.out").write_bytes(b"x")
    # by mtime (upstream): make G_1000 the most recently written G file
    os.utime(tmp_path / "G_1000.pth", (2_000_000,) * 2)
    assert prune_checkpoints(tmp_path, 0) == []  # keep_ckpts 0 disables pruning
    removed = prune_checkpoints(tmp_path, 2)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([
        "G_0.pth", "G_1000.pth", "G_4000.pth", "D_0.pth", "D_3000.pth", "D_4000.pth",
        "DUR_0.pth", "DUR_3000.pth", "DUR_4000.pth", "WD_0.pth", "WD_3000.pth", "WD_4000.pth",
        "G_4000.pth.bak", "events.out",
    ])
    assert len(removed) == 8 and all(Path(p).parent == tmp_path for p in removed)
    # by step number
    assert sorted(Path(p).name for p in prune_checkpoints(tmp_path, 1, sort_by="step")) == [
        "DUR_3000.pth", "D_3000.pth", "G_1000.pth", "WD_3000.pth"]
    with pytest.raises(ValueError):
        prune_checkpoints(tmp_path, 1, sort_by="name")


# ---------------------------------------------------------------------------------------------------
# The real network and the upstream reference checkpoint

models = pytest.importorskip("bert_vits2.models")


@pytest.fixture()
def ref_hps(bv2_ref: Path):
    return load_hparams(bv2_ref / "config.json")


def _build(hps, n_speakers: int | None = None):
    return models.SynthesizerTrn(112, hps.data.filter_length // 2 + 1, hps.train.segment_size // hps.data.hop_length,
                                 n_speakers=hps.data.n_speakers if n_speakers is None else n_speakers, **hps.model)


def test_upstream_g_ref_loads_completely(bv2_ref: Path, ref_hps) -> None:
    torch.manual_seed(0)
    model = _build(ref_hps)
    opt = torch.optim.AdamW(model.parameters(), ref_hps.train.learning_rate, betas=ref_hps.train.betas, eps=ref_hps.train.eps)
    result = load_checkpoint(bv2_ref / "G_ref.pth", model, opt)
    assert result.report.missing == [] and result.report.unexpected == [] and result.report.mismatched == []
    assert result.iteration == 7 and result.learning_rate == 2e-4 and result.report.optimizer_loaded
    expected = torch.load(bv2_ref / "G_ref.pth", weights_only=True, map_location="cpu")["model"]
    _assert_same_state(model.state_dict(), expected)
    assert [line.split()[0] for line in (bv2_ref / "keys.txt").read_text().splitlines()] == list(expected)


def test_upstream_g_ref_other_speaker_count(bv2_ref: Path, ref_hps) -> None:
    torch.manual_seed(0)
    model = _build(ref_hps, n_speakers=5)
    fresh_emb = model.emb_g.weight.detach().clone()
    result = load_checkpoint(bv2_ref / "G_ref.pth", model)
    assert result.report.not_loaded == ["emb_g.weight"] and result.report.unexpected == []
    assert torch.equal(model.emb_g.weight, fresh_emb)
    expected = torch.load(bv2_ref / "G_ref.pth", weights_only=True)["model"]
    assert torch.equal(model.enc_p.encoder.spk_emb_linear.weight, expected["enc_p.encoder.spk_emb_linear.weight"])
    with pytest.raises(CheckpointError, match=r"emb_g\.weight \(3, 16\) in file vs \(5, 16\) in model"):
        load_checkpoint(bv2_ref / "G_ref.pth", _build(ref_hps, n_speakers=5), strict=True)


@pytest.mark.slow
def test_load_model_for_inference(bv2_ref: Path, tmp_path: Path) -> None:
    model, hps = load_model_for_inference(bv2_ref / "config.json", bv2_ref / "G_ref.pth")
    assert not model.training and hps.data.spk2id.bob == 1
    keys = model.state_dict().keys()
    assert not any(k.endswith(("weight_g", "weight_v")) for k in keys) and "dec.ups.0.weight" in keys  # folded
    case = torch.load(bv2_ref / "cases.pt", weights_only=True)["dec_spk"]
    with torch.no_grad():
        out = model.dec(case["inputs"]["z"], g=case["inputs"]["g"])
    torch.testing.assert_close(out, case["outputs"]["o"], rtol=case["tol"]["rtol"], atol=case["tol"]["atol"])
    case = torch.load(bv2_ref / "cases.pt", weights_only=True)["infer_a"]  # whole upstream infer, deterministic
    with torch.no_grad():
        o, attn = model.infer(**case["inputs"], **case["kwargs"])[:2]
    torch.testing.assert_close(o, case["outputs"]["o"], rtol=case["tol"]["rtol"], atol=case["tol"]["atol"])
    assert torch.equal(attn, case["outputs"]["attn"])
    # a config that does not belong to the checkpoint is refused with the differing keys named
    wrong = load_hparams(bv2_ref / "config.json")
    wrong.model.gin_channels = 8
    with pytest.raises(CheckpointError, match=r"G_ref\.pth: does not match the model \(10 with another shape: .*spk_emb_linear\.weight \(32, 16\) in file vs \(32, 8\)"):
        load_model_for_inference(wrong, bv2_ref / "G_ref.pth")


def test_shipped_config_builds_the_released_v23_layout(repo_root: Path, bv2_ref: Path) -> None:
    """configs/config.json gives exactly the keys and shapes of the released full-size v2.3 G (on the meta device: no memory)."""
    hps = load_hparams(repo_root / "configs" / "config.json")
    with torch.device("meta"):
        model = _build(hps)
    got = [f"{k} {str(tuple(v.shape)).replace(' ', '')}" for k, v in model.state_dict().items()]  # `key (d0,d1,...)`
    assert got == (bv2_ref / "keys_full_v23.txt").read_text().splitlines()


@pytest.mark.parametrize("name", ["DUR_ref.pth", "WD_ref.pth"])
def test_upstream_discriminator_checkpoints_load_strictly(bv2_ref: Path, ref_hps, name: str, tmp_path: Path) -> None:
    """DUR_*/WD_* files as train_ms.py writes them: same layout, every key used, optimizer state fits."""
    if name.startswith("DUR"):
        net = models.DurationDiscriminator(ref_hps.model.hidden_channels, ref_hps.model.hidden_channels, 3, 0.1,
                                           gin_channels=ref_hps.model.gin_channels)
    else:
        slm = ref_hps.model.slm
        net = models.WavLMDiscriminator(slm.hidden, slm.nlayers, slm.initial_channel)
    opt = torch.optim.AdamW(net.parameters(), ref_hps.train.learning_rate, betas=ref_hps.train.betas, eps=ref_hps.train.eps)
    result = load_checkpoint(bv2_ref / name, net, opt, strict=True)
    assert result.report.clean and result.report.optimizer_loaded and result.iteration == 7
    expected = torch.load(bv2_ref / name, weights_only=True)["model"]
    _assert_same_state(net.state_dict(), expected)
    # and our save of it is read back identically by plain torch.load
    save_checkpoint(net, opt, result.learning_rate, result.iteration, tmp_path / name)
    _assert_same_state(torch.load(tmp_path / name, weights_only=True)["model"], expected)
