"""Numerical compatibility of the networks with upstream Bert-VITS2 v2.3 (../shared/reference/bv2/cases.pt).

Generic over the case dict: every case is dispatched on its name prefix, every stored output must be produced
and compared with the case's own tolerance (``tol`` / ``tol_overrides`` / ``exact``); shapes and sizes come from
config.json and the stored tensors only.
"""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest
import torch
from conftest import build_synthesizer, load_bv2_config, load_state_dict

from bert_vits2 import commons, losses, monotonic_align, transforms
from bert_vits2.inference import remove_weight_norm_
from bert_vits2.models import DurationDiscriminator, MultiPeriodDiscriminator, WavLMDiscriminator

pytestmark = pytest.mark.usefixtures("torch_one_thread")  # 1 torch thread: see conftest


# Case families owned by other areas (text frontend, BERT, audio features).
OTHER_AREAS = ("audio_", "seq_", "bert_")
MY_PREFIXES = ("infer_", "posterior_", "flow_", "dec_", "mas_", "spline_", "losses_", "disc_", "sdp_")


# ----------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def cases(bv2_ref):
    return torch.load(bv2_ref / "cases.pt", weights_only=True)


@pytest.fixture(scope="module")
def cfg(bv2_ref):
    return load_bv2_config(bv2_ref)


@pytest.fixture(scope="module")
def net_g(bv2_ref, cfg):
    return build_synthesizer(cfg, checkpoint=bv2_ref / "G_ref.pth").eval()


def _family(cases, prefix):
    names = [k for k in cases if k.startswith(prefix)]
    if not names:
        pytest.skip(f"no {prefix}* case in this case set")
    return names


# ---------------------------------------------------------------------------------------------- comparison


def _tol(case, key):
    exact = set(case.get("exact") or [])
    tol = case.get("tol") or {}
    if key in exact or tol.get("exact"):
        return None
    tol = dict(tol)
    tol.update((case.get("tol_overrides") or {}).get(key, {}))
    return tol["rtol"], tol["atol"]


def _compare(name, case, key, got, expected):
    if isinstance(expected, (list, tuple)):
        assert isinstance(got, (list, tuple)) and len(got) == len(expected), f"{name}.{key}: length differs"
        for i, (g, e) in enumerate(zip(got, expected)):
            _compare(name, case, f"{key}", g, e)
        return
    expected_t = torch.as_tensor(expected)
    got_t = torch.as_tensor(got).detach()
    assert tuple(got_t.shape) == tuple(expected_t.shape), (
        f"{name}.{key}: shape {tuple(got_t.shape)} != {tuple(expected_t.shape)}"
    )
    tol = _tol(case, key)
    if tol is None:
        assert torch.equal(got_t.to(expected_t.dtype), expected_t), (
            f"{name}.{key}: not exact ({(got_t.double() - expected_t.double()).abs().max().item():.3g} max diff)"
        )
        return
    rtol, atol = tol
    got_d, exp_d = got_t.double(), expected_t.double()
    ok = torch.allclose(got_d, exp_d, rtol=rtol, atol=atol)
    diff = (got_d - exp_d).abs().max().item() if got_d.numel() else 0.0
    assert ok, f"{name}.{key}: max abs diff {diff:.3g} over rtol {rtol} / atol {atol}"


def _check_outputs(name, case, produced):
    missing = set(case["outputs"]) - set(produced)
    assert not missing, f"{name}: outputs not produced by the test: {sorted(missing)}"
    for key, expected in case["outputs"].items():
        _compare(name, case, key, produced[key], expected)


def _g(net_g, inputs):
    sid = inputs.get("sid")
    if sid is None:
        return None
    g = net_g.emb_g(sid).unsqueeze(-1)
    if inputs.get("g") is not None:
        assert torch.equal(g, inputs["g"]), "emb_g(sid) differs from the stored g"
    return g


_INFER_INPUTS = ("x", "x_lengths", "sid", "tone", "language", "bert", "ja_bert", "en_bert")


def _infer_outputs(net_g, case):
    inp, kw = case["inputs"], case["kwargs"]
    args = [inp[k] for k in _INFER_INPUTS]
    out = {}
    strict = "seed" in case
    with torch.no_grad():
        g = net_g.emb_g(inp["sid"]).unsqueeze(-1)
        out["g"] = g
        x, m_p, logs_p, x_mask = net_g.enc_p(*args[:2], *args[3:], g=g)
        out.update(enc_x=x, enc_m_p=m_p, enc_logs_p=logs_p, x_mask=x_mask)
        out["dp_logw"] = net_g.dp(x, x_mask, g=g)
        if strict:
            torch.manual_seed(case["seed"])
            if "noise" in case and "eps_sdp" in case["noise"]:
                assert torch.equal(torch.randn_like(case["noise"]["eps_sdp"]), case["noise"]["eps_sdp"])
                torch.manual_seed(case["seed"])
            out["sdp_logw"] = net_g.sdp(x, x_mask, g=g, reverse=True, noise_scale=kw["noise_scale_w"])
        else:
            out["sdp_logw"] = net_g.sdp(x, x_mask, g=g, reverse=True, noise_scale=0.0)
        out["logw"] = out["sdp_logw"] * kw["sdp_ratio"] + out["dp_logw"] * (1 - kw["sdp_ratio"])
        out["w_ceil"] = torch.ceil(torch.exp(out["logw"]) * x_mask * kw["length_scale"])
        out["y_lengths"] = torch.clamp_min(torch.sum(out["w_ceil"], [1, 2]), 1).long()
        if strict:
            torch.manual_seed(case["seed"])
        o, attn, y_mask, (z, z_p, m_p_f, logs_p_f) = net_g.infer(*args, **kw)
    out.update(o=o, attn=attn, y_mask=y_mask, z=z, z_p=z_p, m_p=m_p_f, logs_p=logs_p_f)
    return out


# ------------------------------------------------------------------------------------------------- tests


def test_every_network_case_is_handled(cases):
    """A case of this area with an unknown prefix would otherwise pass silently."""
    names = [k for k in cases if not k.startswith("_") and not k.startswith(OTHER_AREAS)]
    unknown = [k for k in names if not k.startswith(MY_PREFIXES)]
    assert not unknown, f"no handler for cases {unknown}"
    assert any(k.startswith("infer_") for k in names)


def test_infer_cases(cases, net_g):
    for name in _family(cases, "infer_"):
        case = cases[name]
        _check_outputs(name, case, _infer_outputs(net_g, case))


def test_infer_unchanged_after_weight_norm_folding(cases, net_g, bv2_ref, cfg):
    folded = remove_weight_norm_(build_synthesizer(cfg, checkpoint=bv2_ref / "G_ref.pth").eval())
    assert not any(k.endswith(("weight_g", "weight_v")) for k in folded.state_dict())
    assert remove_weight_norm_(folded) is folded  # idempotent
    for name in _family(cases, "infer_"):
        case = cases[name]
        if "seed" in case:
            continue
        args = [case["inputs"][k] for k in _INFER_INPUTS]
        with torch.no_grad():
            before = net_g.infer(*args, **case["kwargs"])
            after = folded.infer(*args, **case["kwargs"])
        assert torch.equal(before[1], after[1])
        torch.testing.assert_close(after[0], before[0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(after[0], case["outputs"]["o"], rtol=1e-4, atol=1e-4)


def test_posterior_cases(cases, net_g):
    for name in _family(cases, "posterior_"):
        case = cases[name]
        inp = case["inputs"]
        with torch.no_grad():
            g = _g(net_g, inp)
            _, m, logs, y_mask = net_g.enc_q(inp["y"], inp["y_lengths"], g=g)
            _check_outputs(name, case, {"m": m, "logs": logs, "y_mask": y_mask})
            strict = case.get("strict")
            if strict:
                torch.manual_seed(strict["seed"])
                z, _, _, _ = net_g.enc_q(inp["y"], inp["y_lengths"], g=g)
                _compare(name, case, "z", z, strict["z"])


def test_flow_cases(cases, net_g):
    for name in _family(cases, "flow_"):
        case = cases[name]
        inp = case["inputs"]
        with torch.no_grad():
            g = _g(net_g, inp)
            fwd = net_g.flow(inp["z"], inp["y_mask"], g=g)
            rev = net_g.flow(inp["z"], inp["y_mask"], g=g, reverse=True)
            back = net_g.flow(rev, inp["y_mask"], g=g)
        _check_outputs(name, case, {"forward": fwd, "reverse": rev})
        torch.testing.assert_close(back, inp["z"] * inp["y_mask"], rtol=1e-4, atol=1e-4)


def test_dec_cases(cases, net_g):
    for name in _family(cases, "dec_"):
        case = cases[name]
        inp = case["inputs"]
        with torch.no_grad():
            o = net_g.dec(inp["z"], g=_g(net_g, inp))
        _check_outputs(name, case, {"o": o})


def test_mas_cases(cases):
    for name in _family(cases, "mas_"):
        case = cases[name]
        inp = case["inputs"]
        if "neg_cent" in inp:
            path = monotonic_align.maximum_path(inp["neg_cent"], inp["mask"])
        else:
            path = commons.generate_path(inp["duration"], inp["mask"])
        _check_outputs(name, case, {"path": path})


def test_spline_cases(cases):
    for name in _family(cases, "spline_"):
        case = cases[name]
        inp = case["inputs"]
        outputs, logabsdet = transforms.piecewise_rational_quadratic_transform(
            inp["inputs"], inp["unnormalized_widths"], inp["unnormalized_heights"], inp["unnormalized_derivatives"],
            **case["kwargs"],
        )
        _check_outputs(name, case, {"outputs": outputs, "logabsdet": logabsdet})


def test_losses_cases(cases):
    for name in _family(cases, "losses_"):
        case = cases[name]
        inp = case["inputs"]
        if "z_p" in inp:
            out = {"loss": losses.kl_loss(inp["z_p"], inp["logs_q"], inp["m_p"], inp["logs_p"], inp["z_mask"])}
        elif "fmap_r" in inp:
            out = {"loss": losses.feature_loss(inp["fmap_r"], inp["fmap_g"])}
        elif "disc_real_outputs" in inp:
            loss, r, g = losses.discriminator_loss(inp["disc_real_outputs"], inp["disc_generated_outputs"])
            out = {"loss": loss, "r_losses": r, "g_losses": g}
        else:
            loss, parts = losses.generator_loss(inp["disc_outputs"])
            out = {"loss": loss, "gen_losses": parts}
        _check_outputs(name, case, out)


def recipe_tensor(salt: str, key: str, shape, g_lo=0.8, g_hi=1.6, b_amp=0.1) -> np.ndarray:
    """Deterministic MPD weights of the fixture README (splitmix64 over the flat index)."""
    n = int(np.prod(shape))
    s = np.uint64(zlib.crc32((salt + ":" + key).encode()) & 0xFFFFFFFF)
    with np.errstate(over="ignore"):
        z = (s << np.uint64(32)) + np.arange(1, n + 1, dtype=np.uint64)
        z = z * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    u = (z >> np.uint64(11)).astype(np.float64) * 2.0**-53
    if key.endswith(".weight_g"):
        v = g_lo + (g_hi - g_lo) * u
    elif key.endswith(".bias"):
        v = b_amp * (2 * u - 1)
    else:
        v = 2 * u - 1
    return v.astype(np.float32).reshape(shape)


@pytest.fixture(scope="module")
def net_d(bv2_ref):
    recipe = json.loads((bv2_ref / "D_recipe.json").read_text())
    d = MultiPeriodDiscriminator(use_spectral_norm=False)
    keys_txt = [line.split()[0] for line in (bv2_ref / "keys_D.txt").read_text().splitlines() if line.strip()]
    assert list(d.state_dict()) == keys_txt
    sd = {
        key: torch.from_numpy(
            recipe_tensor(recipe["salt"], key, shape, recipe["g_lo"], recipe["g_hi"], recipe["b_amp"])
        )
        for key, shape in recipe["keys"]
    }
    d.load_state_dict(sd, strict=True)
    return d.eval()


def test_disc_mpd_cases(cases, net_d):
    names = [k for k in _family(cases, "disc_") if "mpd" in k]
    if not names:
        pytest.skip("no MPD case")
    for name in names:
        case = cases[name]
        with torch.no_grad():
            y_d_rs, y_d_gs, fmap_rs, fmap_gs = net_d(case["inputs"]["y"], case["inputs"]["y_hat"])
            out = {"y_d_rs": y_d_rs, "y_d_gs": y_d_gs, "fmap_rs": fmap_rs, "fmap_gs": fmap_gs}
            out["loss_disc"] = losses.discriminator_loss(y_d_rs, y_d_gs)[0]
            out["loss_gen"] = losses.generator_loss(y_d_gs)[0]
            out["loss_fm"] = losses.feature_loss(fmap_rs, fmap_gs)
        _check_outputs(name, case, out)


def test_disc_dur_cases(cases, cfg, bv2_ref):
    names = [k for k in _family(cases, "disc_") if "dur" in k]
    if not names:
        pytest.skip("no duration-discriminator case")
    hidden, gin = cfg["model"]["hidden_channels"], cfg["model"]["gin_channels"]
    dur = DurationDiscriminator(hidden, hidden, 3, 0.1, gin_channels=gin)
    dur.load_state_dict(load_state_dict(bv2_ref / "DUR_ref.pth"), strict=True)
    dur.eval()
    for name in names:
        case = cases[name]
        inp = case["inputs"]
        with torch.no_grad():
            prob_r, prob_hat = dur(inp["x"], inp["x_mask"], inp["dur_r"], inp["dur_hat"], g=inp["g"])
        _check_outputs(name, case, {"prob_r": prob_r, "prob_hat": prob_hat})


def test_disc_wd_cases(cases, cfg, bv2_ref):
    names = [k for k in _family(cases, "disc_") if "wd" in k]
    if not names:
        pytest.skip("no WavLM-discriminator case")
    slm = cfg["model"]["slm"]
    wd = WavLMDiscriminator(slm["hidden"], slm["nlayers"], slm["initial_channel"])
    wd.load_state_dict(load_state_dict(bv2_ref / "WD_ref.pth"), strict=True)
    wd.eval()
    for name in names:
        case = cases[name]
        with torch.no_grad():
            out = wd(case["inputs"]["x"])
        _check_outputs(name, case, {"out": out})


def test_disc_cases_all_dispatched(cases):
    names = [k for k in cases if k.startswith("disc_")]
    unknown = [k for k in names if not any(t in k for t in ("mpd", "dur", "wd"))]
    assert not unknown, f"no handler for {unknown}"


def test_sdp_forward_strict(cases, net_g):
    for name in _family(cases, "sdp_"):
        case = cases[name]
        inp = case["inputs"]
        torch.manual_seed(case["seed"])
        if "noise" in case and "e_q" in case["noise"]:
            assert torch.equal(torch.randn_like(case["noise"]["e_q"]), case["noise"]["e_q"])
            torch.manual_seed(case["seed"])
        with torch.no_grad():
            out = net_g.sdp(inp["x"], inp["x_mask"], inp["w"], g=inp["g"], **case["kwargs"])
        _check_outputs(name, case, {"nll_plus_logq": out})
