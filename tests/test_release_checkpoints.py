"""Release checkpoints (upstream compress_model.py format: no enc_q, fp32 or fp16, fresh optimizer, iteration 0) load
for synthesis with the full checkpoint's audio; what needs enc_q says so; old-version models are refused in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import compress_model
from bert_vits2 import models
from bert_vits2.checkpoint import CheckpointError, read_checkpoint
from bert_vits2.hparams import load_hparams
from bert_vits2.inference import load_model_for_inference
from bert_vits2.release import (
    RELEASE_LEARNING_RATE,
    MissingPosteriorEncoderError,
    has_posterior_encoder,
    make_release_checkpoint,
    release_output_path,
    require_posterior_encoder,
)
from bert_vits2.versions import UnsupportedVersionError

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.nn.utils.weight_norm.*is deprecated:FutureWarning")


def _upstream_release(bv2_ref: Path, out: Path, half: bool) -> Path:
    """What upstream's compress_model.py writes, built here with plain torch (no code of this project)."""
    full = torch.load(bv2_ref / "G_ref.pth", map_location="cpu", weights_only=True)
    kept = {k: (v.half() if half else v) for k, v in full["model"].items() if "enc_q" not in k}
    hps = load_hparams(bv2_ref / "config.json")
    net = models.SynthesizerTrn(112, 1025, 32, n_speakers=3, **hps.model)
    optim = torch.optim.AdamW(net.parameters(), 2e-4, betas=(0.8, 0.99), eps=1e-9)
    torch.save({"model": kept, "iteration": 0, "optimizer": optim.state_dict(), "learning_rate": 0.0001}, out)
    return out


@pytest.fixture(scope="module")
def infer_case(bv2_ref: Path) -> dict:
    return torch.load(bv2_ref / "cases.pt", weights_only=True)["infer_a"]


def _audio(model, case) -> torch.Tensor:
    with torch.no_grad():
        return model.infer(**case["inputs"], **case["kwargs"])[0]


@pytest.mark.parametrize("half", [False, True])
@pytest.mark.slow
def test_upstream_release_files_synthesize_like_the_full_checkpoint(bv2_ref, tmp_path, infer_case, half) -> None:
    release = _upstream_release(bv2_ref, tmp_path / f"G_7_release{'_half' if half else ''}.pth", half)
    full, _ = load_model_for_inference(bv2_ref / "config.json", bv2_ref / "G_ref.pth")
    model, _ = load_model_for_inference(bv2_ref / "config.json", release)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # fp16 weights are computed in fp32
    expected, got = _audio(full, infer_case), _audio(model, infer_case)
    torch.testing.assert_close(got, infer_case["outputs"]["o"], rtol=1e-4, atol=1e-4 if not half else 5e-3)
    if half:
        diff = float((got - expected).abs().max())
        assert 0 < diff < 5e-3, diff  # fp16 rounding of the weights is audible only as ~1e-4 noise
    else:
        assert torch.equal(got, expected)
    assert has_posterior_encoder(full) and not has_posterior_encoder(model)


@pytest.mark.slow
def test_what_needs_enc_q_says_so(bv2_ref, tmp_path) -> None:
    release = _upstream_release(bv2_ref, tmp_path / "G_7_release.pth", half=False)
    model, _ = load_model_for_inference(bv2_ref / "config.json", release)
    with pytest.raises(MissingPosteriorEncoderError, match=r"G_7_release\.pth: a release checkpoint .* without the "
                                                           r"posterior encoder enc_q, so z extraction from audio is "
                                                           r"not possible .*use the full G_\*\.pth") as info:
        require_posterior_encoder(model, "z extraction from audio")
    assert "\n" not in str(info.value)
    with pytest.raises(MissingPosteriorEncoderError, match="running the posterior encoder"):
        model.enc_q(torch.zeros(1, 1025, 4), torch.tensor([4]))
    with pytest.raises(MissingPosteriorEncoderError, match="--export-posterior is not possible"):
        require_posterior_encoder(read_checkpoint(release)["model"], "--export-posterior", release)
    require_posterior_encoder(read_checkpoint(bv2_ref / "G_ref.pth")["model"], "fine-tuning")  # full file: fine


@pytest.mark.parametrize("half", [False, True])
@pytest.mark.slow
def test_compress_model_cli_writes_upstream_format(bv2_ref, tmp_path, infer_case, half, capsys) -> None:
    g = tmp_path / "G_7.pth"
    shutil.copy(bv2_ref / "G_ref.pth", g)
    args = ["-c", str(bv2_ref / "config.json"), "-i", str(g)] + (["-hf"] if half else [])
    assert compress_model.main(args) == 0
    out = tmp_path / ("G_7_release_half.pth" if half else "G_7_release.pth")  # upstream's default name
    assert release_output_path(g, half) == out and str(out.resolve()) in capsys.readouterr().out
    data = torch.load(out, weights_only=True)
    full = torch.load(g, weights_only=True)
    assert set(data) == {"model", "iteration", "optimizer", "learning_rate"}
    assert data["iteration"] == 0 and data["learning_rate"] == RELEASE_LEARNING_RATE == 0.0001
    assert list(data["model"]) == [k for k in full["model"] if "enc_q" not in k]  # upstream order, no enc_q
    assert len(full["model"]) - len(data["model"]) == 103
    assert {v.dtype for v in data["model"].values()} == {torch.float16 if half else torch.float32}
    opt = data["optimizer"]
    assert opt["state"] == {} and len(opt["param_groups"]) == 1
    assert opt["param_groups"][0]["params"] == full["optimizer"]["param_groups"][0]["params"]  # whole G, as upstream
    assert out.stat().st_size < g.stat().st_size * (0.5 if half else 0.9)
    model, _ = load_model_for_inference(bv2_ref / "config.json", out)
    torch.testing.assert_close(_audio(model, infer_case), infer_case["outputs"]["o"], rtol=1e-4,
                               atol=5e-3 if half else 1e-4)


@pytest.mark.slow
def test_compress_model_refuses_bad_input(bv2_ref, tmp_path, capsys) -> None:
    g = tmp_path / "G_7.pth"
    shutil.copy(bv2_ref / "G_ref.pth", g)
    cfg = json.loads((bv2_ref / "config.json").read_text())
    cfg["model"]["gin_channels"] = 8
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"G_7\.pth: does not match .*wrong\.json \(other shape 9: .*pass the "
                                              r"config\.json this checkpoint was trained with"):
        make_release_checkpoint(wrong, g)
    assert compress_model.main(["-c", str(wrong), "-i", str(g)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("compress_model.py: ") and err.count("\n") == 1
    with pytest.raises(CheckpointError, match="would overwrite the input"):
        make_release_checkpoint(bv2_ref / "config.json", g, g)
    d_file = tmp_path / "DUR_7.pth"
    shutil.copy(bv2_ref / "DUR_ref.pth", d_file)
    with pytest.raises(CheckpointError, match=r"not a Bert-VITS2 generator"):
        make_release_checkpoint(bv2_ref / "config.json", d_file)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["DUR_7.pth", "G_7.pth", "wrong.json"]


@pytest.mark.parametrize("version,shown", [("2.2", "2.2"), ("2.1", "2.1"), ("2.0.2", "2.0"), ("1.1.1", "1.1.1")])
def test_old_version_config_is_refused_in_one_line(bv2_ref, tmp_path, version, shown) -> None:
    cfg = json.loads((bv2_ref / "config.json").read_text())
    cfg["version"] = version
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    with pytest.raises(UnsupportedVersionError, match=rf"config\.json \(version '{version}'\): a Bert-VITS2 {shown} "
                                                      r"model, but this toolkit runs only v2\.3 networks") as info:
        load_model_for_inference(path, bv2_ref / "G_ref.pth")
    assert "\n" not in str(info.value) and "upstream Bert-VITS2" in str(info.value)


def test_old_version_checkpoint_with_a_v23_config_is_refused(bv2_ref, tmp_path) -> None:
    data = torch.load(bv2_ref / "G_ref.pth", weights_only=True)
    data["model"]["enc_p.in_feature_net.0.weight"] = torch.zeros(2, 2)  # the 2.2 CLAP emotion layers
    path = tmp_path / "G_9.pth"
    torch.save(data, path)
    with pytest.raises(UnsupportedVersionError, match=r"G_9\.pth: a Bert-VITS2 2\.2 model.*CLAP emotion layers"):
        load_model_for_inference(bv2_ref / "config.json", path)
