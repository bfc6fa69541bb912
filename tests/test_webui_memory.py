"""Web UI memory (issue 24 item 3): a long audio -> face request in a fresh process stays within a bounded increment
over the process's own baseline and gives its memory back (benchmarks/bench_webui_memory.py measures the largest)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest
from conftest import REPO_ROOT, checkout_env

SCRIPT = REPO_ROOT / "benchmarks" / "bench_webui_memory.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_webui_memory", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_long_audio_to_face_memory_is_bounded_and_released(bench, tmp_path):
    """120 s of 48 kHz stereo speech: before blocking, the whole-clip STFT and mel-head activations alone took
    ~450 MiB for this length (2.1 GB at 510 s); now bounded blocks (the upload is read block by block into the wav and
    the features, never held whole)."""
    if not (REPO_ROOT / "motion" / "face" / "assets" / "default_mel_head.pth").is_file():
        pytest.skip("the shipped default head is missing")
    audio = bench.make_speech(tmp_path / "long.flac", 120.0, 48000, 2)
    warm = bench.make_speech(tmp_path / "warm.wav", 3.0, 44100, 1)
    proc = subprocess.run([sys.executable, str(SCRIPT), "--child", "a2f", "--audio", str(audio), "--warm", str(warm),
                           "--threads", "2"], capture_output=True, text=True, timeout=900, env=checkout_env(),
                          cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["peak_mib"] - r["baseline_mib"] <= 150, r
    assert r["after_mib"] - r["baseline_mib"] <= 60, r


def test_bench_refuses_bad_counts(bench, capsys):
    with pytest.raises(SystemExit) as exc:
        bench.main(["--requests", "0"])
    assert exc.value.code == 2 and "at least 1" in capsys.readouterr().err


# --- the block-by-block audio -> face path (issue 24 item 3): the same numbers as the whole-audio path -------------


def _speech_file(path, seconds: float, sr: int = 48000, seed: int = 3):
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    voiced = sum(np.sin(2 * np.pi * k * np.cumsum(f0) / sr) / k for k in range(1, 6))
    env = np.clip(np.sin(2 * np.pi * 3.0 * t), 0, None) * (np.sin(2 * np.pi * 0.3 * t) > -0.5)
    mono = (0.3 * voiced * env + 0.01 * rng.standard_normal(len(t))).astype(np.float32)
    sf.write(path, np.stack([mono, 0.6 * mono], 1), sr, subtype="PCM_16")
    return path


def test_log_mel_given_in_pieces_equals_log_mel():
    import numpy as np

    from motion.face.features import LogMelBlocks, log_mel

    rng = np.random.default_rng(4)
    for n, block in ((1500, 512), (2048, 1), (44100 * 4 + 77, 64), (512 * 130, 128)):  # short (padded), exact edges
        audio = (0.3 * rng.standard_normal(n)).astype(np.float32)
        whole = log_mel(audio, block_frames=block)
        pieces = LogMelBlocks(block_frames=block)
        i = 0
        while i < n:
            k = int(rng.integers(1, 20000))
            pieces.push(audio[i: i + k])
            i += k
        np.testing.assert_array_equal(pieces.finish(), whole)
    assert whole.shape == (80, 130)


def test_mel_head_recomputed_from_edge_states_is_the_same():
    """A long clip's mel head keeps only each GRU direction's state at block edges and recomputes its layers' outputs:
    the same numbers as keeping them (and as the whole-clip run within float rounding), for 1-3 GRU layers."""
    import numpy as np
    import torch

    from motion.face.heads import MelHead, _mel_head_blocks

    torch.manual_seed(0)
    rng = np.random.default_rng(5)
    for layers in (1, 2, 3):
        head = MelHead(n_mels=40, channels=[4, 8], rnn_hidden=16, rnn_layers=layers, fc_hidden=16).eval()
        feats = rng.standard_normal((40, 700)).astype(np.float32)
        with torch.no_grad():
            kept = _mel_head_blocks(head, feats, 128)
            recomputed = _mel_head_blocks(head, feats, 128, keep_outputs_bytes=0)
            whole = head(torch.from_numpy(feats)[None])[0].T.numpy()
        np.testing.assert_array_equal(recomputed, kept)
        assert np.abs(recomputed - whole).max() <= 1e-5


def test_audio_to_face_in_blocks_equals_the_whole_audio(tmp_path):
    """The web UI reads an upload block by block into its wav and its face: the same wav bytes and the same face
    (alive layer included) as reading it whole; a failed request leaves no folder behind."""
    import numpy as np

    from bert_vits2.audio import write_wav_pcm16
    from motion.face.api import FaceMaker
    from motion.face.features import iter_tts_audio, load_tts_audio
    from motion.webui.app import DEMO_LABEL, Handlers, WebUIConfig, WebUIState

    if not (REPO_ROOT / "motion" / "face" / "assets" / "default_mel_head.pth").is_file():
        pytest.skip("the shipped default head is missing")
    path = _speech_file(tmp_path / "up.flac", 6.3)
    audio = load_tts_audio(path)
    maker = FaceMaker()
    whole = maker.for_audio(audio, 44100)
    blocks = maker.for_audio_blocks(iter_tts_audio(path, block=5000))
    np.testing.assert_array_equal(np.concatenate(list(iter_tts_audio(path, block=7000))), audio)
    assert blocks.source == whole.source
    np.testing.assert_array_equal(blocks.frames, whole.frames)

    state = WebUIState(WebUIConfig(model_dir=str(tmp_path / "none"), bert_dir=str(tmp_path / "none"),
                                   outputs_dir=str(tmp_path / "out")))
    wav, _, _, _, last = Handlers(state).audio_to_face(str(path), DEMO_LABEL)
    ref = write_wav_pcm16(tmp_path / "ref.wav", audio, 44100)
    assert open(wav, "rb").read() == ref.read_bytes()
    np.testing.assert_array_equal(np.load(last["npy"]), whole.frames)
    folders = set((tmp_path / "out").iterdir())
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not really a wav")
    with pytest.raises(Exception, match="could not make a face"):
        Handlers(state).audio_to_face(str(bad), DEMO_LABEL)
    assert set((tmp_path / "out").iterdir()) == folders
