"""The Live Link Face app's CSV: columns by name, timecodes, write -> read."""

import numpy as np
import pytest

from motion.arkit import CSV_NAMES, INDEX, NAMES
from motion.livelink.app_csv import CsvFormatError, format_timecode, parse_timecode, read_csv, read_llf_csv, write_csv


def test_real_excerpt_reads_by_name(livelink_ref):
    path = livelink_ref / "llf_take_excerpt.csv"
    frames, fps = read_csv(path)
    assert frames.shape == (600, 61) and frames.dtype == np.float32
    header = path.read_text().splitlines()[0].split(",")
    row1 = path.read_text().splitlines()[1].split(",")
    # every wire column holds the value of the CSV column with the same name (the swapped pairs included)
    for name in NAMES:
        assert frames[0, INDEX[name]] == pytest.approx(float(row1[header.index(name)]), abs=1e-9)
    assert header[2 + 15] == "JawRight" and header[2 + 21] == "MouthRight"
    data = read_llf_csv(path)
    assert data.timecodes[0] == "13:13:04:31.652"
    assert data.timecode_fps == 60.0
    # this excerpt has one row every two timecode frames: the rows are 30 per second
    assert fps == 30.0 and data.times[-1] == pytest.approx(20.0, abs=0.01)
    assert data.gaps == [(595, 1)]


def test_write_read_round_trip_byte_exact(livelink_ref, tmp_path):
    src = livelink_ref / "llf_take_excerpt.csv"
    d = read_llf_csv(src)
    out = tmp_path / "x.csv"
    write_csv(out, d.frames, d.fps, d.frame_numbers, d.sub_frames, timecode_fps=d.timecode_fps)
    assert out.read_bytes() == src.read_bytes()
    e = read_llf_csv(out)
    np.testing.assert_array_equal(e.frames, d.frames)


def test_write_read_synthetic_and_spellings(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (90, 61)).astype(np.float32)
    p = tmp_path / "a.csv"
    write_csv(p, x, fps=60, start_frame=60 * 3600 * 10 + 59)
    text = p.read_text()
    assert text.splitlines()[0] == "Timecode,BlendShapeCount," + ",".join(CSV_NAMES)
    assert text.splitlines()[1].startswith("10:00:00:59.000,61,")
    assert text.splitlines()[2].startswith("10:00:01:00.000,61,")
    y, fps = read_csv(p)
    assert fps == 60.0
    np.testing.assert_allclose(y, x, atol=1e-9)
    # other spelling of the count column, other case, reordered columns: still by name
    lines = text.splitlines()
    header = lines[0].split(",")
    header[1] = "blendshapecount"
    header = [h.upper() if h == "JawOpen" else h for h in header]
    order = [0, 1] + list(range(62, 1, -1))
    rows = [",".join(header[i] for i in order)] + [",".join(r.split(",")[i] for i in order) for r in lines[1:]]
    q = tmp_path / "b.csv"
    q.write_text("\n".join(rows) + "\n")
    z, _ = read_csv(q)
    np.testing.assert_array_equal(z, y)


def test_timecodes():
    assert parse_timecode("13:13:04:31.652") == (13, 13, 4, 31.652)
    assert format_timecode(((13 * 60 + 13) * 60 + 4) * 60 + 31, 60, 0.652) == "13:13:04:31.652"
    with pytest.raises(ValueError):
        parse_timecode("13:13:04")


def test_clear_errors(tmp_path):
    p = tmp_path / "u.csv"
    p.write_text("Timecode, FrameRate, EyeBlinkLeft\n00:00:00:00,60,0\n")
    with pytest.raises(CsvFormatError, match="Unreal"):
        read_csv(p)
    p.write_text("Timecode,BlendShapeCount,EyeBlinkLeft\n00:00:00:00.000,61,0\n")
    with pytest.raises(CsvFormatError, match="missing columns"):
        read_csv(p)
    with pytest.raises(CsvFormatError, match="no such file"):
        read_csv(tmp_path / "none.csv")
