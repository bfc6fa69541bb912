"""State-dict compatibility: upstream checkpoints load strictly; key names, order and shapes match upstream."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import build_synthesizer, load_state_dict

from bert_vits2.models import DurationDiscriminator, MultiPeriodDiscriminator, WavLMDiscriminator

pytestmark = pytest.mark.usefixtures("torch_one_thread")  # 1 torch thread: see conftest


# Released v2.3 model section (spec section 1); the fixture config supplies everything else.
FULL_V23_MODEL = {
    "inter_channels": 192,
    "hidden_channels": 192,
    "filter_channels": 768,
    "n_heads": 2,
    "n_layers": 6,
    "kernel_size": 3,
    "p_dropout": 0.1,
    "upsample_initial_channel": 512,
    "gin_channels": 512,
}


def _read_keys(path):
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            key, shape = line.split()
            out.append((key, tuple(int(d) for d in shape.strip("()").split(",") if d)))
    return out


def _keys_of(module):
    return [(k, tuple(v.shape)) for k, v in module.state_dict().items()]


def test_g_keys_and_checkpoint_load(bv2_ref, bv2_cfg, tmp_path):
    cfg = bv2_cfg
    model = build_synthesizer(cfg)
    assert _keys_of(model) == _read_keys(bv2_ref / "keys.txt")
    reference = load_state_dict(bv2_ref / "G_ref.pth")
    result = model.load_state_dict(reference, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    # legacy weight-norm names survive a forward pass and a save/load round trip
    with torch.no_grad():
        model.dec(torch.zeros(1, cfg["model"]["inter_channels"], 2))
    path = tmp_path / "G.pth"
    torch.save({"model": model.state_dict()}, path)
    saved = load_state_dict(path)
    assert list(saved) == list(reference)
    assert sum(k.endswith("weight_g") for k in saved) > 0
    for k, v in reference.items():
        assert torch.equal(saved[k], v), k


def test_discriminator_keys_and_checkpoints(bv2_ref, bv2_cfg):
    cfg = bv2_cfg
    assert _keys_of(MultiPeriodDiscriminator(use_spectral_norm=False)) == _read_keys(bv2_ref / "keys_D.txt")
    recipe = json.loads((bv2_ref / "D_recipe.json").read_text())
    assert [(k, tuple(s)) for k, s in recipe["keys"]] == _read_keys(bv2_ref / "keys_D.txt")

    hidden, gin = cfg["model"]["hidden_channels"], cfg["model"]["gin_channels"]
    dur = DurationDiscriminator(hidden, hidden, 3, 0.1, gin_channels=gin)
    assert _keys_of(dur) == _read_keys(bv2_ref / "keys_DUR.txt")
    res = dur.load_state_dict(load_state_dict(bv2_ref / "DUR_ref.pth"), strict=True)
    assert not res.missing_keys and not res.unexpected_keys

    slm = cfg["model"]["slm"]
    wd = WavLMDiscriminator(slm["hidden"], slm["nlayers"], slm["initial_channel"])
    assert _keys_of(wd) == _read_keys(bv2_ref / "keys_WD.txt")
    res = wd.load_state_dict(load_state_dict(bv2_ref / "WD_ref.pth"), strict=True)
    assert not res.missing_keys and not res.unexpected_keys


def test_full_size_v23_layout(bv2_ref, bv2_cfg):
    cfg = bv2_cfg
    cfg["model"].update(FULL_V23_MODEL)
    expected = _read_keys(bv2_ref / "keys_full_v23.txt")
    n_speakers = dict(expected)["emb_g.weight"][0]
    model = build_synthesizer(cfg, n_speakers=n_speakers)
    assert _keys_of(model) == expected
