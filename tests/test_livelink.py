"""Live Link Face v6 packets against real captured data; decoding never raises."""

import json
import random
import struct

import numpy as np
import pytest

from motion.arkit import NAMES
from motion.livelink import (
    DecodeResult,
    LiveLinkFrame,
    LiveLinkReceiver,
    LiveLinkSender,
    PacketTally,
    decode_packet,
    encode_packet,
    read_capture,
    write_capture,
)


@pytest.fixture(scope="module")
def dao(livelink_ref):
    packets = read_capture(livelink_ref / "dao.gesichter")
    expected = json.loads((livelink_ref / "dao.expected.json").read_text())
    return packets, expected


def _check(frame: LiveLinkFrame, exp: dict, nbytes: int):
    assert frame.device_id == exp["device_id"] and frame.subject == exp["subject"]
    assert frame.frame_number == exp["frame"]
    assert frame.sub_frame == pytest.approx(exp["subframe"], abs=1e-12)
    assert [frame.fps_numerator, frame.fps_denominator] == exp["rate"]
    assert len(frame.values) == exp["count"] == 61
    np.testing.assert_allclose(frame.values, exp["values"], atol=6e-8, rtol=0)
    assert nbytes == exp["packet_bytes"]


def test_every_packet_decodes_and_matches_expected(dao):
    packets, exp = dao
    assert len(packets) == exp["packet_count"] == 180
    results = [decode_packet(p) for p in packets]
    assert all(r.ok for r in results), [r.reason for r in results if not r.ok]
    for r, p, e in zip(results, packets, exp["first_frames"]):
        _check(r.frame, e, len(p))
    _check(results[-1].frame, exp["last_frame"], len(packets[-1]))
    assert [r.frame.frame_number for r in results] == exp["frame_numbers"]
    allv = np.stack([r.frame.values for r in results])
    assert allv.min() == pytest.approx(exp["value_min"], abs=1e-7)
    assert allv.max() == pytest.approx(exp["value_max"], abs=1e-7)
    gaps = np.diff(exp["frame_numbers"])
    assert sorted(gaps.tolist())[-1] == 8  # the one real gap: 7 frames lost


def test_reencode_is_byte_exact(dao):
    packets, _ = dao
    for p in packets:
        assert encode_packet(decode_packet(p).frame) == p


def test_capture_container_round_trip(dao, tmp_path):
    packets, _ = dao
    write_capture(tmp_path / "x.gesichter", packets[:5])
    assert read_capture(tmp_path / "x.gesichter") == packets[:5]


def test_header_only_packets():
    f = LiveLinkFrame("0123", "Face", 77, 0.5, 60, 1, None)
    p = encode_packet(f)
    assert len(p) == 1 + 4 + 4 + 4 + 4 + 16
    r = decode_packet(p)
    assert r.ok and r.frame.header_only and r.frame.frame_number == 77 and r.frame.fps == 60
    assert encode_packet(r.frame) == p
    tally = PacketTally()
    tally.add(p, 0.0)
    assert tally.header_only == 1 and not tally.frames and tally.invalid == 0


def test_full_packet_size_with_uuid():
    f = LiveLinkFrame("A" * 36, "iPhoneSubject", 1, 0.0, 60, 1, np.zeros(61, np.float32))
    assert len(encode_packet(f)) == 319  # spec: 36-char id, 13-char name


def test_rejections_have_reasons(dao):
    good = dao[0][0]
    cases = {
        b"": "short",
        bytes([5]) + good[1:]: "bad version",
        good[:3]: "short",
        good[:1] + struct.pack(">i", -1) + good[5:]: "bad lengths",
        good[:1] + struct.pack(">i", 100000) + good[5:]: "bad lengths",
        good[:1] + struct.pack(">i", 3000) + good[5:]: "bad lengths",
        good[:-1]: "short",
        good + b"\0": "bad lengths",
        good[:60]: "short",
    }
    count_at = len(good) - 61 * 4 - 1
    cases[good[:count_at] + bytes([52]) + good[count_at + 1 :]] = "bad count"
    cases[good[:5] + b"\xff" * 32 + good[37:]] = "bad text"
    nan = good[:count_at + 1] + struct.pack(">f", float("nan")) + good[count_at + 5 :]
    cases[nan] = "bad values"
    for data, reason in cases.items():
        r = decode_packet(data)
        assert isinstance(r, DecodeResult) and not r.ok and r.frame is None
        assert r.reason.startswith(reason), (data[:8], r.reason)
    assert decode_packet(None).reason.startswith("short")  # not even bytes
    assert decode_packet(memoryview(good)).ok and decode_packet(bytearray(good)).ok


def test_fuzz_never_raises(dao):
    """>= 100,000 random and mutated packets: every call returns a DecodeResult."""
    rng = random.Random(1234)
    seeds = dao[0][:20] + [encode_packet(LiveLinkFrame("d", "s", 1, 0.0, 60, 1, None))]
    n_ok = n_bad = 0
    for i in range(100_000):
        kind = i % 4
        base = bytearray(seeds[i % len(seeds)])
        if kind == 0:
            data = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 40))) if i % 8 else bytes([6]) + rng.randbytes(rng.randrange(0, 400))
        elif kind == 1:  # flip bytes
            for _ in range(rng.randrange(1, 6)):
                base[rng.randrange(len(base))] = rng.getrandbits(8)
            data = bytes(base)
        elif kind == 2:  # truncate / extend
            data = bytes(base[: rng.randrange(len(base) + 1)]) if i % 8 < 4 else bytes(base) + rng.randbytes(rng.randrange(1, 9))
        else:  # corrupt a length or count field
            off = rng.choice([1, 5 + base[4], len(base) - 245 if len(base) > 245 else 1])
            base[off : off + 4] = struct.pack(">i", rng.choice([-1, 0, 1, 255, 2**31 - 1, -(2**31), rng.randrange(-999, 999)]))[: len(base[off : off + 4])]
            data = bytes(base)
        r = decode_packet(data)
        assert isinstance(r, DecodeResult) and (r.frame is None) != (r.reason is None)
        n_ok += r.ok
        n_bad += not r.ok
    assert n_bad > 50_000 and n_ok > 100  # both paths exercised


def test_sender_to_receiver_loopback():
    with LiveLinkReceiver("127.0.0.1", 0) as rx:
        host, port = rx.address
        values = np.linspace(-1, 1, 61).astype(np.float32)
        with LiveLinkSender(host, port, subject="Test", device_id="X" * 36) as tx:
            sent = [tx.send(values * k / 10, k) for k in range(10)]
            tx.send(None, 10)
        got = [rx.receive(1.0) for _ in range(11)]
    assert got[:10] == sent
    frames = [decode_packet(g).frame for g in got]
    assert [f.frame_number for f in frames] == list(range(11))
    assert frames[-1].header_only and frames[3].subject == "Test"
    np.testing.assert_array_equal(frames[5].values, (values * 5 / 10).astype(np.float32))


def test_encode_rejects_wrong_value_count():
    with pytest.raises(ValueError, match="61"):
        encode_packet(LiveLinkFrame("d", "s", 0, 0.0, 60, 1, np.zeros(52)))
    assert len(NAMES) == 61
