"""Fuzz harness (issues 13, 21, 24): every command-line tool, called in-process with a table of bad inputs.

Each case calls the tool's ``main(argv)`` in a worker thread (cwd = its own output folder, stdout/stderr and
logged warnings captured). A case fails on an uncaught exception (anything but ``SystemExit``/``KeyboardInterrupt``,
in the tool or in a thread it started: what a user sees as a traceback), on a hang (no answer within
``BV2_FUZZ_TIMEOUT`` s), on a nonzero exit without a message, or when any input file changed (data lost). Bad inputs
are values that are not numbers, NaN/inf, zero/negative counts and rates, out-of-range ports, absurd sizes, garbage,
truncated, empty, integer or complex files, npy headers declaring huge shapes, outputs that are an input (also
through a hard link), output folders that are files, names with folder parts, hosts nobody can listen on, and
folders holding one bad file. The ``SMOKE`` cases also run as real scripts in a subprocess (the files still run as
``python script.py``).

Run with ``-s`` to see the summary line: runs, clean errors, tracebacks, hangs, inputs changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import free_port

REPO = Path(__file__).resolve().parents[1]
TRACEBACK = "Traceback (most recent call last)"
TIMEOUT_S = float(os.environ.get("BV2_FUZZ_TIMEOUT", "60"))


@dataclass(frozen=True)
class Case:
    script: str
    args: str  # shell-like; {name} is replaced by a fixture path
    note: str = ""
    ok_codes: tuple[int, ...] = (1, 2)  # refused with a message; (0,) where the tool reports the bad file and goes on
    expect: str = ""  # text the answer must hold (e.g. the bad file's name)

    @property
    def id(self) -> str:
        return f"{self.script}:{self.args}"[:90]

    @property
    def module(self) -> str:
        """``motion/record.py`` -> ``motion.record`` (every tool's entry is ``main(argv: list[str] | None) -> int``)."""
        return self.script.removesuffix(".py").replace("/", ".")


PORT = str(free_port("udp"))

CASES: list[Case] = [
    # --- motion/record.py
    Case("motion/record.py", "--seconds nan"),
    Case("motion/record.py", "--seconds inf"),
    Case("motion/record.py", "--seconds -3"),
    Case("motion/record.py", "--seconds abc"),
    Case("motion/record.py", "--port 99999"),
    Case("motion/record.py", "--port -1"),
    Case("motion/record.py", "--takes 0"),
    Case("motion/record.py", "--countdown nan --takes 2"),
    Case("motion/record.py", "--sample-rate 0"),
    Case("motion/record.py", "--import {junk_csv} --offset-ms nan --out-dir {out}"),
    Case("motion/record.py", "--import {junk_csv} --out-dir {out}"),
    Case("motion/record.py", "--import {missing} --out-dir {out}"),
    Case("motion/record.py", "--audio-file {junk_wav} --seconds 0.2 --host 127.0.0.1 --port {port} --out-dir {out}"),
    Case("motion/record.py", "--audio-file {good_wav} --seconds 0.2 --host 127.0.0.1 --port {port} --out-dir {a_file}"),
    Case("motion/record.py", "--audio-file {good_wav} --seconds 0.2 --host 999.1.1.1 --port {port} --out-dir {out}"),
    Case("motion/record.py", "--recover {missing}"),
    Case("motion/record.py", "--device 99 --seconds 1 --host 127.0.0.1 --port {port} --out-dir {out}",
         "no such microphone (or no PortAudio at all)"),
    Case("motion/record.py", "--accept-device X --audio-file {junk_wav} --out-dir {out}"),
    Case("motion/record.py", "--recover {bad_partial_dir}", "a .partial folder without info.json"),
    # --- motion/tts2ue.py
    Case("motion/tts2ue.py", "--npy {junk_npy} --no-audio --virtual-clock --dry-run {out}/a.jsonl"),
    Case("motion/tts2ue.py", "--npy {nan_npy} --no-audio --virtual-clock --dry-run {out}/a.jsonl"),
    Case("motion/tts2ue.py", "--npy {huge_npy} --no-audio --virtual-clock --dry-run {out}/a.jsonl"),
    Case("motion/tts2ue.py", "--npy {pickle_npy} --no-audio --virtual-clock --dry-run {out}/a.jsonl"),
    Case("motion/tts2ue.py", "--npy {wrong_shape_npy} --no-audio --virtual-clock --dry-run {out}/a.jsonl"),
    Case("motion/tts2ue.py", "--npy {face_npy} --no-audio --virtual-clock --dry-run {face_npy}", "output is the input"),
    Case("motion/tts2ue.py", "--npy {face_npy} --wav {good_wav} --no-audio --virtual-clock --dry-run {good_wav}"),
    Case("motion/tts2ue.py", "--npy {face_npy} --wav {junk_wav} --no-audio --virtual-clock --dry-run {out}/a.jsonl"),
    Case("motion/tts2ue.py", "--csv {junk_csv} --no-audio --virtual-clock --dry-run {out}/a.jsonl"),
    Case("motion/tts2ue.py", "{missing} --no-audio --virtual-clock --dry-run {out}/a.jsonl"),
    Case("motion/tts2ue.py", "--npy {face_npy} --fps 0"),
    Case("motion/tts2ue.py", "--npy {face_npy} --fps nan"),
    Case("motion/tts2ue.py", "--npy {face_npy} --send-fps inf"),
    Case("motion/tts2ue.py", "--npy {face_npy} --delay_ms nan"),
    Case("motion/tts2ue.py", "--npy {face_npy} --port 99999"),
    Case("motion/tts2ue.py", "--npy {face_npy} --no-audio --dry-run {a_dir}"),
    # --- motion/vmc_cli.py
    Case("motion/vmc_cli.py", "{body_npy} --damping LeftUpperArm=nan --bvh {out}/a.bvh"),
    Case("motion/vmc_cli.py", "{body_npy} --damping LeftUpperArm --bvh {out}/a.bvh"),
    Case("motion/vmc_cli.py", "{body_npy} --damping =1 --bvh {out}/a.bvh"),
    Case("motion/vmc_cli.py", "{body_npy} --bvh-scale nan --bvh {out}/a.bvh"),
    Case("motion/vmc_cli.py", "{body_npy} --bvh-scale 0 --bvh {out}/a.bvh"),
    Case("motion/vmc_cli.py", "{body_npy} --fps 0 --bvh {out}/a.bvh"),
    Case("motion/vmc_cli.py", "{body_npy} --port 70000"),
    Case("motion/vmc_cli.py", "{body_npy} --smooth 2 --bvh {out}/a.bvh"),
    Case("motion/vmc_cli.py", "{body_npy} --smooth 1000000000 --bvh {out}/a.bvh"),
    Case("motion/vmc_cli.py", "{body_npy} --bvh {body_npy}", "output is the input"),
    Case("motion/vmc_cli.py", "{body_npy} --dry-run {body_npy}", "output is the input"),
    Case("motion/vmc_cli.py", "{junk_npy} --bvh {out}/a.bvh"),
    Case("motion/vmc_cli.py", "{huge_npy} --bvh {out}/a.bvh"),
    Case("motion/vmc_cli.py", "{nan_body_npy} --bvh {out}/a.bvh"),
    Case("motion/vmc_cli.py", "{face_npy} --bvh {out}/a.bvh", "a face where a body is expected"),
    Case("motion/vmc_cli.py", "--face {nan_npy} --dry-run {out}/a.jsonl"),
    Case("motion/vmc_cli.py", "--face {junk_csv} --dry-run {out}/a.jsonl"),
    Case("motion/vmc_cli.py", "{junk_json} --bvh {out}/a.bvh", "a broken audio2photoreal export"),
    Case("motion/vmc_cli.py", "{a_file} --bvh {out}/a.bvh", "unknown format"),
    Case("motion/vmc_cli.py", "{body_npy} --bvh {a_dir}"),
    # --- resample.py
    Case("resample.py", "--in-dir {wav_dir} --out-dir {wav_dir} --quiet", "out-dir is the in-dir"),
    Case("resample.py", "--in-dir {wav_dir} --out-dir {wav_dir} --overwrite --quiet"),
    Case("resample.py", "--in-dir {missing} --out-dir {out}/r --quiet"),
    Case("resample.py", "--in-dir {wav_dir} --out-dir {a_file} --quiet"),
    Case("resample.py", "--in-dir {wav_dir} --out-dir {out}/r --sr 0 --quiet"),
    Case("resample.py", "--in-dir {wav_dir} --out-dir {out}/r --sr nan --quiet"),
    Case("resample.py", "--in-dir {wav_dir} --out-dir {out}/r --processes -1 --quiet"),
    Case("resample.py", "--in-dir {mixed_dir} --out-dir {out}/r --processes 1 --quiet", "one bad file: reported",
         ok_codes=(1,), expect="bad.wav"),
    # --- motion/wav_to_visemes.py
    Case("motion/wav_to_visemes.py", "{mixed_dir} -o {out}/v -q", "one bad file: reported, the others done",
         ok_codes=(0, 1), expect="bad.wav"),
    Case("motion/wav_to_visemes.py", "{junk_wav} -o {out}/v -q"),
    Case("motion/wav_to_visemes.py", "{missing} -o {out}/v -q"),
    Case("motion/wav_to_visemes.py", "{good_wav} --fps 0 -o {out}/v"),
    Case("motion/wav_to_visemes.py", "{good_wav} --fps nan -o {out}/v"),
    Case("motion/wav_to_visemes.py", "{good_wav} --delay-ms nan -o {out}/v"),
    Case("motion/wav_to_visemes.py", "{good_wav} --head {junk_pth} -o {out}/v -q"),
    Case("motion/wav_to_visemes.py", "{good_wav} --head {code_pth} -o {out}/v -q"),
    Case("motion/wav_to_visemes.py", "{good_wav} -o {a_file} -q"),
    # --- motion/prepare_visemes.py
    Case("motion/prepare_visemes.py", "--records {missing} -o {out}/p -q --no-z"),
    Case("motion/prepare_visemes.py", "--records {take_dir} -o {out}/p -q --no-z --max-offset-ms 1e9"),
    Case("motion/prepare_visemes.py", "--records {take_dir} -o {out}/p -q --no-z --offset-ms nan"),
    Case("motion/prepare_visemes.py", "--records {take_dir} -o {out}/p -q --no-z --n-mels 0"),
    Case("motion/prepare_visemes.py", "--records {take_dir} -o {out}/p -q --no-z --val-size -1"),
    Case("motion/prepare_visemes.py", "--records {take_dir} -o {out}/p -q --no-z --posterior {junk_pth}"),
    # --- motion/plot_take.py, motion/render_face.py
    Case("motion/plot_take.py", "{junk_npy} --fps 60 --out {out}/a.png"),
    Case("motion/plot_take.py", "{huge_npy} --fps 60 --out {out}/a.png"),
    Case("motion/plot_take.py", "{face_npy} --fps nan --out {out}/a.png"),
    Case("motion/plot_take.py", "{face_npy} --fps 0 --out {out}/a.png"),
    Case("motion/plot_take.py", "{missing} --out {out}/a.png"),
    Case("motion/plot_take.py", "{face_npy} --fps 60 --out {face_npy}", "output is the input"),
    Case("motion/render_face.py", "{face_npy} -o {out}/a.mp4 --size 0"),
    Case("motion/render_face.py", "{face_npy} -o {out}/a.mp4 --fps nan"),
    Case("motion/render_face.py", "{junk_npy} -o {out}/a.mp4"),
    Case("motion/render_face.py", "{huge_npy} -o {out}/a.mp4 --fps 60"),
    Case("motion/render_face.py", "{face_npy} --fps 60 -o {face_npy}", "output is the input"),
    # --- train_ms.py (visemes), preprocess_text.py, bert_gen.py, compress_model.py, export_onnx.py
    Case("train_ms.py", "--visemes -m {out}/m --train-list {missing} --epochs 1"),
    Case("train_ms.py", "--visemes -m {out}/m --epochs 0"),
    Case("train_ms.py", "--visemes -m {out}/m --lr nan"),
    Case("train_ms.py", "--visemes -m {out}/m --batch-size 0"),
    Case("train_ms.py", "--visemes -m {out}/m --crop-s inf"),
    Case("train_ms.py", "--visemes -m {out}/m --train-list {junk_list} --val-list {junk_list} --epochs 1"),
    Case("train_ms.py", "-m {out}/m -c {junk_json}"),
    Case("train_ms.py", "-m {out}/m -c {missing}"),
    Case("preprocess_text.py", "--transcription-path {missing} --config-path {missing} --quiet"),
    Case("preprocess_text.py", "--transcription-path {junk_list} --config-path {junk_json} --quiet"),
    Case("preprocess_text.py", "--val-per-lang -1 --quiet"),
    Case("preprocess_text.py", "--processes -5 --quiet"),
    Case("bert_gen.py", "-c {junk_json} --quiet"),
    Case("bert_gen.py", "-c {missing} --quiet"),
    Case("bert_gen.py", "--num-processes -1 --quiet"),
    Case("compress_model.py", "-i {junk_pth} -o {out}/c.pth"),
    Case("compress_model.py", "-i {code_pth} -o {out}/c.pth"),
    Case("export_onnx.py", "--checkpoint {junk_pth} -c {junk_json} -o {out}/onnx"),
    Case("export_onnx.py", "--tolerance nan"),
    # --- webui.py (arguments only: a case that parses would start a server)
    Case("webui.py", "--port 99999"),
    Case("webui.py", "--port 0"),
    Case("webui.py", "--fps nan"),
    Case("webui.py", "--max-chars 0"),
    Case("webui.py", "--max-upload-mb nan"),
    Case("webui.py", "--max-audio-s -1"),
    Case("webui.py", "--queue-size 0"),
    Case("webui.py", "--concurrency 1e9"),
    Case("webui.py", "--keep-outputs inf"),
    # --- issue 24: outputs that are inputs (item 2), tracebacks (item 5), silent nonsense (item 6)
    Case("motion/wav_to_visemes.py", "--g-checkpoint {g_pth} -c {config_json} --export-posterior {g_pth}",
         "output is the input", expect="is the input"),
    Case("motion/wav_to_visemes.py", "--g-checkpoint {g_pth} -c {config_json} --export-posterior {config_json}",
         "output is the input", expect="is the input"),
    Case("compress_model.py", "-i {g_pth} -c {config_json} -o {config_json}", "output is the input",
         expect="is the input"),
    Case("compress_model.py", "-i {g_pth} -c {config_json} -o {g_link}", "output is a hard link of the input",
         expect="is the input"),
    Case("preprocess_text.py", "--transcription-path {esd_list} --config-path {config_json} --val-path {config_json} "
         "--quiet --allow-tokenizer-fallback", "output is the input", expect="is the input"),
    Case("preprocess_text.py", "--transcription-path {esd_list} --config-path {config_json} --train-path {esd_list} "
         "--quiet --allow-tokenizer-fallback", "output is the input", expect="is the input"),
    Case("motion/render_face.py", "{face_npy} --fps 60 -o {face_link}", "output is a hard link of the input"),
    Case("motion/plot_take.py", "{face_npy} --fps 60 --wav {junk_wav} --out {out}/a.png", expect="junk.wav"),
    Case("train_ms.py", "-m {out}/m --num-workers -3"),
    Case("train_ms.py", "-m {out}/m --max-steps -1"),
    Case("train_ms.py", "-m {out}/m --keep-ckpts -1"),
    Case("bert_gen.py", "-c {config_json} --lists {latin1_list} --quiet", "a list that is not UTF-8",
         expect="latin1.list"),
    Case("export_onnx.py", "--checkpoint {g_pth} -c {config_json} -o {face_npy}", "--out is a file"),
    Case("export_onnx.py", "--checkpoint {g_pth} -c {config_json} -o {out}/o -n ../../escape"),
    Case("webui.py", "--host 999.1.1.1"),
    Case("webui.py", "--host 8.8.8.8"),
    Case("webui.py", "--checkpoint {junk_pth}", "a junk checkpoint: says what is wrong, starts nothing"),
    Case("webui.py", "--checkpoint {junk_pth} -c {junk_json}", expect="junk.json"),
    Case("webui.py", "-m {a_file}", expect="is a file"),
    Case("webui_preprocess.py", "--host 999.1.1.1"),
    Case("webui_preprocess.py", "--port 0"),
    Case("motion/tts2ue.py", "--npy {empty_npy} --no-audio --virtual-clock --dry-run {out}/a.jsonl",
         expect="no frames"),
    Case("motion/tts2ue.py", "--npy {int_npy} --no-audio --virtual-clock --dry-run {out}/a.jsonl", expect="int64"),
    Case("motion/tts2ue.py", "--npy {complex_npy} --no-audio --virtual-clock --dry-run {out}/a.jsonl",
         expect="complex"),
    Case("motion/vmc_cli.py", "--face {int_npy} --dry-run {out}/a.jsonl", expect="int64"),
    Case("motion/plot_take.py", "{complex_npy} --fps 60 --out {out}/a.png"),
    Case("motion/render_face.py", "{int_npy} --fps 60 -o {out}/a.mp4"),
    Case("motion/record.py", "--import {header_csv} --out-dir {out}", "a header-only app CSV",
         expect="no face frames"),
]

# run as real scripts too (a subprocess each): the files still work as ``python script.py``
SMOKE: list[Case] = [
    Case("motion/record.py", "--seconds nan"),
    Case("motion/tts2ue.py", "--npy {face_npy} --no-audio --virtual-clock --dry-run {face_npy}", "output is the input"),
    Case("compress_model.py", "-i {g_pth} -c {config_json} -o {config_json}", expect="is the input"),
]



def _npy_header(shape, dtype="<f4") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _make_fixtures(root: Path, bv2_ref: Path) -> dict[str, Path]:
    import soundfile as sf

    rng = np.random.default_rng(0)
    f: dict[str, Path] = {}
    d = root / "in"
    d.mkdir()

    def put(name: str, data: bytes | str) -> Path:
        p = d / name
        p.write_bytes(data.encode() if isinstance(data, str) else data)
        return p

    f["junk_wav"] = put("junk.wav", rng.bytes(3000))
    f["junk_npy"] = put("garbage.npy", rng.bytes(500))
    f["junk_csv"] = put("junk.csv", "Timecode,BlendShapeCount,nonsense\n1,2,3\n")
    f["junk_json"] = put("junk.json", "{not json")
    f["junk_pth"] = put("junk.pth", rng.bytes(4096))
    f["junk_list"] = put("junk.list", "no|pipes|here\n\x00\x01\n")
    f["huge_npy"] = put("huge.npy", _npy_header((10**11, 61)) + b"\0" * 256)
    f["pickle_npy"] = put("pickle.npy", _npy_header((2,), "|O") + b"\0" * 32)
    f["a_file"] = put("a_file.txt", "I am a file")
    face = np.clip(rng.random((90, 61), dtype=np.float32) * 0.5, 0, 1)
    np.save(d / "face.npy", face)
    f["face_npy"] = d / "face.npy"
    bad = face.copy()
    bad[5, 3] = np.nan
    bad[6, 4] = np.inf
    np.save(d / "nan.npy", bad)
    f["nan_npy"] = d / "nan.npy"
    np.save(d / "wrong_shape.npy", np.zeros((10, 7), np.float32))
    f["wrong_shape_npy"] = d / "wrong_shape.npy"
    body = rng.normal(0, 0.3, (40, 22, 3)).astype(np.float32)
    body[:, 0, 1] += 1.0
    np.save(d / "body.npy", body)
    f["body_npy"] = d / "body.npy"
    body[3, 2, 1] = np.nan
    np.save(d / "nan_body.npy", body)
    f["nan_body_npy"] = d / "nan_body.npy"
    t = np.arange(44100) / 44100
    sf.write(d / "good.wav", (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 44100)
    f["good_wav"] = d / "good.wav"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {root / 'PWNED'}",))

    torch.save({"model": {"w": torch.zeros(1)}, "evil": Evil()}, d / "code.pth")
    f["code_pth"] = d / "code.pth"
    wav_dir = d / "wavs"
    wav_dir.mkdir()
    sf.write(wav_dir / "a.wav", np.zeros(4410, np.float32), 22050)
    f["wav_dir"] = wav_dir
    mixed = d / "mixed"
    mixed.mkdir()
    sf.write(mixed / "good.wav", (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 44100)
    (mixed / "bad.wav").write_bytes(rng.bytes(2000))
    f["mixed_dir"] = mixed
    takes = d / "takes"
    takes.mkdir()
    sf.write(takes / "t1.wav", (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 44100)
    np.save(takes / "t1.npy", bad[:60])  # a take with NaN/inf values
    (takes / "t1.json").write_text('{"fps": 60}')
    (takes / "t2.npy").write_bytes(rng.bytes(300))  # an unreadable take
    (takes / "t2.json").write_text('{"fps": 60}')
    f["take_dir"] = takes
    bad_partial = d / "rec"
    (bad_partial / "x.partial").mkdir(parents=True)
    f["bad_partial_dir"] = bad_partial
    f["a_dir"] = d / "a_dir"
    f["a_dir"].mkdir()
    f["missing"] = d / "does-not-exist"
    # issue 24: a small real voice (the reference config's sizes), hard links, empty / integer / complex curves
    from bert_vits2.checkpoint import save_checkpoint
    from bert_vits2.hparams import HParams
    from bert_vits2.models import SynthesizerTrn
    from motion.arkit import NAMES

    cfg = json.loads((bv2_ref / "config.json").read_text())
    f["config_json"] = put("config.json", json.dumps(cfg, indent=1))
    hps = HParams(cfg)
    torch.manual_seed(0)
    net = SynthesizerTrn(112, hps.data.filter_length // 2 + 1, hps.train.segment_size // hps.data.hop_length,
                         n_speakers=hps.data.n_speakers, **hps.model)
    f["g_pth"] = d / "G_7.pth"
    save_checkpoint(net, None, None, 7, f["g_pth"])
    f["g_link"] = d / "G_7-link.pth"
    os.link(f["g_pth"], f["g_link"])
    f["face_link"] = d / "face-link.npy"
    os.link(f["face_npy"], f["face_link"])
    f["esd_list"] = put("esd.list", "".join(f"{d / 'good.wav'}|bob|EN|Hello number {i}.\n" for i in range(4)))
    f["latin1_list"] = put("latin1.list", "a.wav|bob|EN|caf\xe9|x|y|z\n".encode("latin-1"))
    for name, arr in (("empty", np.zeros((0, 61), np.float32)), ("int", np.ones((30, 61), np.int64)),
                      ("complex", np.ones((30, 61), np.complex64))):
        np.save(d / f"{name}.npy", arr)
        f[f"{name}_npy"] = d / f"{name}.npy"
    f["header_csv"] = put("Slate_1_iPhone.csv", "Timecode,BlendShapeCount," + ",".join(NAMES) + "\n")
    return f



def _digest(folder: Path) -> dict[str, str]:
    """Content hashes of every file (before and after the whole run)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _stamps(folder: Path) -> dict[str, tuple[int, int, int]]:
    """(inode, size, mtime) of every file: any write, in place or by rename, changes one (checked around each case)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            st = p.stat()
            out[str(p.relative_to(folder))] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return out


@dataclass
class Outcome:
    rc: int | None  # None: no answer within TIMEOUT_S (a hang)
    stderr: str
    seconds: float
    stdout: str = ""
    crash: str = ""  # the traceback of an uncaught exception (in the tool or a thread it started)
    changed: list[str] = field(default_factory=list)  # input files this case changed


def _argv(case: Case, fixtures: dict[str, Path], out: Path) -> list[str]:
    paths = {k: str(v) for k, v in fixtures.items()}
    paths["out"] = str(out)
    paths["port"] = PORT  # filled in at run time: the test ids stay the same in every process (pytest -n)
    return [a.format(**paths) for a in shlex.split(case.args)]


class _Capture(logging.Handler):
    """Warnings and errors the tool logs count as what it said (as they would on a terminal)."""

    def __init__(self, sink: io.StringIO) -> None:
        super().__init__(logging.WARNING)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.write(f"{record.levelname} {record.getMessage()}\n")


def _run_in_process(case: Case, fixtures: dict[str, Path], out: Path) -> Outcome:
    """``main(argv)`` in a worker thread, cwd = ``out``; the process state a tool may touch is put back after."""
    argv = _argv(case, fixtures, out)
    main = importlib.import_module(case.module).main
    stdout, stderr = io.StringIO(), io.StringIO()
    result: dict[str, object] = {}
    thread_crashes: list[str] = []

    def call() -> None:
        try:
            result["rc"] = main(argv)
        except SystemExit as exc:  # argparse's usage errors and sys.exit(): an answer, not a crash
            code = exc.code
            if isinstance(code, str):
                stderr.write(code + "\n")
            result["rc"] = 1 if isinstance(code, str) else int(code or 0)
        except KeyboardInterrupt:
            result["rc"] = 130
        except BaseException:  # noqa: BLE001 - this is what the harness looks for
            result["crash"] = traceback.format_exc()

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        thread_crashes.append("".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback)))

    env, cwd, threads = dict(os.environ), os.getcwd(), torch.get_num_threads()
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    capture = _Capture(stderr)
    root = logging.getLogger()
    old_hook, old_basic = threading.excepthook, logging.basicConfig
    t0 = time.monotonic()
    worker = threading.Thread(target=call, daemon=True, name=f"fuzz {case.id}")
    try:
        os.chdir(out)
        root.addHandler(capture)
        threading.excepthook = thread_hook
        logging.basicConfig = lambda *a, **k: None  # a tool's logging setup would outlive its case
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            worker.start()
            worker.join(TIMEOUT_S)
    finally:
        logging.basicConfig = old_basic
        threading.excepthook = old_hook
        root.removeHandler(capture)
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        torch.set_num_threads(threads)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    seconds = time.monotonic() - t0
    crash = str(result.get("crash", "")) + "".join(thread_crashes)
    rc = None if worker.is_alive() else result.get("rc", 1 if crash else None)
    return Outcome(rc if rc is None else int(rc), stderr.getvalue(), seconds, stdout.getvalue(), crash)


def _run_script(case: Case, fixtures: dict[str, Path], out: Path) -> Outcome:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    env["GRADIO_ANALYTICS_ENABLED"] = "False"
    t0 = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, str(REPO / case.script), *_argv(case, fixtures, out)], cwd=out,
                              env=env, capture_output=True, text=True, timeout=TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        return Outcome(None, err, time.monotonic() - t0)
    crash = proc.stderr if TRACEBACK in proc.stderr else ""
    return Outcome(proc.returncode, proc.stderr, time.monotonic() - t0, proc.stdout, crash)


def _selected(cases: list[Case]) -> list[Case]:
    """All cases, or those whose id contains ``BV2_FUZZ_ONLY`` (while fixing one tool)."""
    only = os.environ.get("BV2_FUZZ_ONLY")
    return [c for c in cases if not only or only in c.id]


@pytest.fixture(scope="module")
def fuzz_results(tmp_path_factory, bv2_ref):
    root = tmp_path_factory.mktemp("fuzz")
    fixtures = _make_fixtures(root, bv2_ref)
    t0 = time.monotonic()
    results: dict[tuple[str, Case], Outcome] = {}
    runs = [("in-process", c, _run_in_process) for c in _selected(CASES)]
    runs += [("script", c, _run_script) for c in _selected(SMOKE)]
    first = _digest(root / "in")
    for i, (how, case, run) in enumerate(runs):
        out = root / f"out{i:03d}"
        out.mkdir()
        before = _stamps(root / "in")
        r = run(case, fixtures, out)
        after = _stamps(root / "in")
        r.changed = sorted(k for k in before if before.get(k) != after.get(k))
        results[(how, case)] = r
    last = _digest(root / "in")
    changed = sorted({k for r in results.values() for k in r.changed} | {k for k in first if first[k] != last.get(k)})
    outcomes = list(results.values())
    tracebacks = sum(bool(r.crash) or TRACEBACK in r.stderr + r.stdout for r in outcomes)
    hangs = sum(r.rc is None for r in outcomes)
    clean = sum(r.rc not in (None, 0) and not r.crash and bool((r.stderr + r.stdout).strip()) for r in outcomes)
    n_script = sum(how == "script" for how, _ in results)
    print(f"\nCLI fuzz: {len(outcomes)} runs ({len(outcomes) - n_script} in-process, {n_script} as scripts) in "
          f"{time.monotonic() - t0:.1f} s: {clean} clean errors, {len(outcomes) - clean - hangs} other answers "
          f"(exit 0 or no message), {tracebacks} tracebacks, {hangs} hangs, {len(changed)} input files changed"
          f"{': ' + ', '.join(changed) if changed else ''}, code in a pickle ran: {(root / 'PWNED').exists()}")
    return results, changed, root


def _check(r: Outcome, case: Case) -> None:
    assert r.rc is not None, f"hang: no answer within {TIMEOUT_S:.0f} s\n{r.stderr[-1500:]}"
    assert not r.crash, r.crash[-3000:]
    assert TRACEBACK not in r.stderr, r.stderr[-3000:]
    assert r.rc in case.ok_codes, f"exit {r.rc}, expected one of {case.ok_codes}\n{r.stderr[-1500:]}"
    if r.rc != 0:  # a refusal (stderr) or a summary naming the bad file (stdout)
        assert r.stderr.strip() or r.stdout.strip(), "refused without saying why"
    assert TRACEBACK not in r.stdout, r.stdout[-3000:]
    assert case.expect in r.stderr + r.stdout, f"the answer does not name {case.expect!r}"
    assert not r.changed, f"input files changed: {r.changed}"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gets_a_clear_answer(case: Case, fuzz_results):
    results, _, _ = fuzz_results
    if ("in-process", case) not in results:
        pytest.skip("not selected by BV2_FUZZ_ONLY")
    _check(results[("in-process", case)], case)


@pytest.mark.parametrize("case", SMOKE, ids=[c.id for c in SMOKE])
def test_tools_run_as_scripts(case: Case, fuzz_results):
    results, _, _ = fuzz_results
    if ("script", case) not in results:
        pytest.skip("not selected by BV2_FUZZ_ONLY")
    _check(results[("script", case)], case)


def test_no_input_was_changed_and_no_pickle_code_ran(fuzz_results):
    _, changed, root = fuzz_results
    assert changed == []
    assert not (root / "PWNED").exists()
