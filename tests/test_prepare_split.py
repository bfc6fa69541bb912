"""Training on your own takes: the validation split holds out a share (never most of the takes), the offset estimate
warns at the edge of its range and names takes that disagree, and the report says "constant in this data" instead of
``nan`` for shapes that never move."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from motion.face.prepare import GRID_FPS, PreparedTake, describe_split, offset_warnings, parse_val_size, split_takes


@pytest.mark.parametrize("n,val_size,expected_val", [
    (6, 0.15, 1), (6, "15%", 1), (20, 0.15, 3), (40, 0.15, 6), (2, 0.15, 1), (3, 0.15, 1), (1, 0.15, 0),
    (6, 5, 2),  # a count that would leave training fewer takes than validation is capped
    (25, 4, 4), (6, 0, 0), (10, "50%", 4),
])
def test_split_holds_out_a_share_and_keeps_most_takes_for_training(n, val_size, expected_val):
    names = [f"take{i:02d}" for i in range(n)]
    train, val = split_takes(names, val_size, seed=1)
    assert len(val) == expected_val and len(train) + len(val) == n and not set(train) & set(val)
    if n >= 3:
        assert len(train) > n / 2
    assert split_takes(names, val_size, seed=1) == (train, val)


def test_val_size_parsing_and_the_split_line():
    assert parse_val_size("15%") == pytest.approx(0.15) and parse_val_size("0.2") == pytest.approx(0.2)
    assert parse_val_size("5") == 5 and isinstance(parse_val_size("5"), int)
    for bad in ("-1", "abc", "100%", "1.5", "nan"):
        with pytest.raises(ValueError):
            parse_val_size(bad)
    train, val = split_takes([f"records/t{i}" for i in range(6)], "15%", seed=3)
    line = describe_split(train, val, "15%")
    assert line.startswith("split: 5 takes for training, 1 for validation (17% of 6; asked 15%)")
    assert Path(val[0]).name in line
    assert "none for validation" in describe_split(["records/t0"], [], "15%")


def _take(name: str, offset_ms: float | None) -> PreparedTake:
    z = np.zeros(10)
    return PreparedTake(Path("records") / name, 1.0, np.zeros((10, 61), np.float32), z > 0, z,
                        offset_s=None if offset_ms is None else offset_ms / 1000.0)


def test_offset_warnings_name_the_edge_and_the_outlying_takes():
    agree = [_take(f"t{i}", 80 + 5 * i) for i in range(5)]
    assert offset_warnings(agree, 0.09, 0.3) == []
    # the case: estimates from -269 to +300 ms, overall +300 ms (the edge of a ±300 ms search)
    spread = [_take("a", -269), _take("b", 85), _take("c", 90), _take("d", 95), _take("e", 300), _take("f", None)]
    msgs = offset_warnings(spread, 0.3, 0.3)
    assert len(msgs) == 2
    assert "edge of the search range" in msgs[0] and "+300 ms" in msgs[0] and "--offset-ms" in msgs[0]
    assert "a -269 ms" in msgs[1] and "e +300 ms (at the edge)" in msgs[1] and "re-record" in msgs[1]
    assert " b " not in msgs[1] and "range from -269 to +300 ms" in msgs[1]
    near_edge = offset_warnings(agree, (300 - 1000 / GRID_FPS) / 1000, 0.3)  # one frame inside is not the edge
    assert near_edge == []


def test_training_report_says_constant_instead_of_nan():
    from motion.face.train import format_r, pearson

    flat = np.zeros(50)
    moving = np.sin(np.arange(50) / 5.0)
    assert np.isnan(pearson(moving, flat)) and format_r(pearson(moving, flat)) == "constant in this data"
    assert pearson(flat, moving) == 0.0  # a flat prediction of a moving shape is no correlation, not "constant"
    assert format_r(pearson(moving, moving)) == "1.000"


@pytest.mark.slow
def test_prepare_visemes_prints_the_split_and_names_a_take_that_disagrees(tmp_path, capsys):
    from motion import prepare_visemes
    from motion.face.synth_data import make_utterance, write_take

    texts = ["Papa bought a map and a bag of apples.", "My mother made a big blue boat.",
             "We may meet them by the barn at noon.", "Bob and Pam both bake bread.",
             "Maybe the baby wants more milk.", "A pan of warm buns by the window."]
    rng = np.random.default_rng(0)
    for i, text in enumerate(texts):
        u = make_utterance(text, "en-us", rate=150)
        write_take(tmp_path / "records", f"take{i}", u.audio, u.targets, offset_s=0.25 if i == 4 else 0.08, rng=rng)
    rc = prepare_visemes.main(["--records", str(tmp_path / "records"), "-o", str(tmp_path / "lists"), "--no-z", "-q"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "split: 5 takes for training, 1 for validation (17% of 6; asked 15%)" in out
    warning = next(line for line in out.splitlines() if line.startswith("warning: per-take offset estimates"))
    named = warning.split(":")[-1]
    assert "take4 +" in named and not any(f"take{i} " in named for i in (0, 1, 2, 3, 5)), warning
