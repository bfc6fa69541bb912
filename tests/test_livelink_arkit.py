"""The name orders of motion/arkit.py, both ways (wire <-> Apple, MediaPipe, app CSV, Perfect Sync)."""

import numpy as np

from motion import arkit


def _ramp(n=61, t=3):
    return (np.arange(t * n, dtype=np.float32).reshape(t, n) + 1) / 1000.0


def test_wire_apple_round_trip():
    x = _ramp()
    apple = arkit.to_apple(x)
    assert apple.shape == (3, 52)
    assert list(arkit.APPLE_NAMES) == sorted(arkit.APPLE_NAMES)
    # each Apple column holds the wire value of the same shape
    for j, name in enumerate(arkit.APPLE_NAMES):
        assert np.array_equal(apple[:, j], x[:, arkit.index_of(name)])
    back = arkit.from_apple(apple)
    assert np.array_equal(back[:, :52], x[:, :52])
    assert not back[:, 52:].any()  # rotations are not in Apple's list


def test_mediapipe_neutral_and_no_tongue():
    x = _ramp()
    mp = arkit.to_mediapipe(x)
    assert mp.shape == (3, 52)
    assert arkit.MEDIAPIPE_NAMES[0] == "_neutral" and "tongueOut" not in arkit.MEDIAPIPE_NAMES
    assert not mp[:, 0].any()  # _neutral has no wire value
    assert np.array_equal(mp[:, arkit.MEDIAPIPE_NAMES.index("jawOpen")], x[:, arkit.INDEX["JawOpen"]])
    back = arkit.from_mediapipe(mp)
    tongue = arkit.INDEX["TongueOut"]
    keep = [i for i in range(52) if i != tongue]
    assert np.array_equal(back[:, keep], x[:, keep])
    assert not back[:, tongue].any() and not back[:, 52:].any()


def test_csv_order_swaps_exactly_two_pairs():
    diff = [i for i, (a, b) in enumerate(zip(arkit.NAMES, arkit.CSV_NAMES)) if a != b]
    assert [arkit.NAMES[i] for i in diff] == ["JawLeft", "JawRight", "MouthLeft", "MouthRight"]
    assert [arkit.CSV_NAMES[i] for i in diff] == ["JawRight", "JawLeft", "MouthRight", "MouthLeft"]
    x = _ramp()
    c = arkit.to_csv_order(x)
    assert np.array_equal(c[:, 15], x[:, arkit.INDEX["JawRight"]])
    assert np.array_equal(c[:, 22], x[:, arkit.INDEX["MouthLeft"]])
    assert np.array_equal(arkit.from_csv_order(c), x)


def test_perfect_sync_round_trip_and_camel_case():
    x = _ramp()
    ps = arkit.to_perfect_sync(x)
    assert set(ps) == set(arkit.BLENDSHAPE_NAMES)
    back = arkit.from_perfect_sync(ps)
    assert np.array_equal(back[:, :52], x[:, :52])
    camel = {n[0].lower() + n[1:]: v for n, v in ps.items()}
    assert np.array_equal(arkit.from_perfect_sync(camel), back)


def test_rotation_names_and_check_frames():
    assert arkit.NAMES[52:] == ("HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
                                "RightEyeYaw", "RightEyePitch", "RightEyeRoll")
    import pytest

    with pytest.raises(ValueError, match=r"\[T, 61\]"):
        arkit.check_frames(np.zeros((4, 52)))
