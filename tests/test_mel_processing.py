"""bert_vits2.mel_processing: upstream-identical spectrograms (cases.pt `audio_ref`) and the .spec.pt cache."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from bert_vits2 import mel_processing as mp
from bert_vits2.hparams import load_hparams


@pytest.fixture(scope="module")
def audio_ref(bv2_ref: Path) -> dict:
    return torch.load(bv2_ref / "cases.pt", weights_only=True)["audio_ref"]


def _close(got: torch.Tensor, expected: torch.Tensor, tol: dict) -> None:
    assert got.shape == expected.shape and got.dtype == expected.dtype
    torch.testing.assert_close(got, expected, rtol=tol["rtol"], atol=tol["atol"])


@pytest.mark.slow
def test_matches_upstream_audio_ref(audio_ref: dict) -> None:
    y, kw, out, tol = audio_ref["inputs"]["y"], audio_ref["kwargs"], audio_ref["outputs"], audio_ref["tol"]
    spec = mp.spectrogram_torch(y, kw["n_fft"], kw["sampling_rate"], kw["hop_size"], kw["win_size"], center=kw["center"])
    _close(spec, out["spec"], tol)
    mel = mp.mel_spectrogram_torch(y, **kw)
    _close(mel, out["mel"], tol)
    mel_from_spec = mp.spec_to_mel_torch(spec, kw["n_fft"], kw["num_mels"], kw["sampling_rate"], kw["fmin"], kw["fmax"])
    _close(mel_from_spec, out["mel_from_spec"], tol)
    assert spec.shape[-1] == mp.spectrogram_frames(y.shape[-1], kw["n_fft"], kw["hop_size"])


def test_unbatched_input_and_caches(audio_ref: dict) -> None:
    y, kw = audio_ref["inputs"]["y"], audio_ref["kwargs"]
    spec1 = mp.spectrogram_torch(y[0], kw["n_fft"], kw["sampling_rate"], kw["hop_size"], kw["win_size"])
    torch.testing.assert_close(spec1, audio_ref["outputs"]["spec"][0], rtol=1e-4, atol=1e-4)
    # windows / mel bases are built once per (size, dtype, device)
    w1 = mp._hann_window(2048, torch.float32, torch.device("cpu"))
    assert mp._hann_window(2048, torch.float32, torch.device("cpu")) is w1
    assert mp._hann_window(2048, torch.float64, torch.device("cpu")).dtype == torch.float64
    b1 = mp._mel_basis(44100, 2048, 128, 0.0, None, torch.float32, torch.device("cpu"))
    assert b1.shape == (128, 1025)
    assert mp._mel_basis(44100, 2048, 128, 0.0, None, torch.float32, torch.device("cpu")) is b1
    # float64 input works and agrees (the float32 reference is the rounding floor)
    mel64 = mp.mel_spectrogram_torch(y.double(), **kw)
    assert mel64.dtype == torch.float64
    torch.testing.assert_close(mel64.float(), audio_ref["outputs"]["mel"], rtol=1e-4, atol=1e-4)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="too short"):
        mp.spectrogram_torch(torch.zeros(1, 100), 2048, 44100, 512, 2048)
    with pytest.raises(TypeError, match="float waveform"):
        mp.spectrogram_torch(torch.zeros(1, 4000, dtype=torch.int16), 2048, 44100, 512, 2048)
    with pytest.raises(ValueError, match="shape"):
        mp.spectrogram_torch(torch.zeros(1, 1, 4000), 2048, 44100, 512, 2048)
    with pytest.raises(ValueError, match="frequency bins"):
        mp.spec_to_mel_torch(torch.ones(1, 513, 4), 2048, 128, 44100, 0.0, None)


def _write_wav(path: Path, seconds: float = 0.1, sr: int = 44100, channels: int = 1) -> np.ndarray:
    rng = np.random.default_rng(0)
    pcm = (rng.uniform(-0.5, 0.5, (int(sr * seconds), channels)) * 32768).astype(np.int16)
    sf.write(path, pcm, sr, subtype="PCM_16")
    return pcm


def test_wav_spectrogram_cache(tmp_path: Path, bv2_ref: Path) -> None:
    data = load_hparams(bv2_ref / "config.json").data
    wav = tmp_path / "utt.wav"
    pcm = _write_wav(wav)
    spec, audio = mp.load_wav_spectrogram(wav, data)
    # upstream: int16 samples / max_wav_value
    torch.testing.assert_close(audio, torch.from_numpy(pcm[:, 0] / 32768.0).float().unsqueeze(0), rtol=0, atol=0)
    expected = mp.spectrogram_torch(audio, 2048, 44100, 512, 2048).squeeze(0)
    assert torch.equal(spec, expected)
    cache = tmp_path / "utt.spec.pt"
    assert mp.spec_cache_path(wav) == cache and cache.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["utt.spec.pt", "utt.wav"]  # no temp files left
    assert torch.equal(torch.load(cache, weights_only=True), expected)
    # second call reads the cache (prove it by planting a recognisable, well-shaped tensor)
    planted = torch.full_like(expected, 3.0)
    torch.save(planted, cache)
    os.utime(cache, (wav.stat().st_mtime + 10,) * 2)
    assert torch.equal(mp.load_wav_spectrogram(wav, data)[0], planted)
    # a cache older than the wav is rebuilt
    os.utime(cache, (wav.stat().st_mtime - 10,) * 2)
    assert torch.equal(mp.load_wav_spectrogram(wav, data)[0], expected)
    # a cache of the wrong shape or a corrupt one is rebuilt
    torch.save(torch.zeros(3, 3), cache)
    assert torch.equal(mp.load_wav_spectrogram(wav, data)[0], expected)
    cache.write_bytes(b"garbage")
    os.utime(cache, (wav.stat().st_mtime + 10,) * 2)
    assert torch.equal(mp.load_wav_spectrogram(wav, data)[0], expected)
    # use_cache=False neither reads nor writes
    cache.unlink()
    mp.load_wav_spectrogram(wav, data, use_cache=False)
    assert not cache.exists()


def test_wav_spectrogram_errors(tmp_path: Path, bv2_ref: Path) -> None:
    data = load_hparams(bv2_ref / "config.json").data
    wrong_rate = tmp_path / "a.wav"
    _write_wav(wrong_rate, sr=22050)
    with pytest.raises(ValueError, match=r"a\.wav: 22050 Hz, the config expects 44100 Hz"):
        mp.load_wav_spectrogram(wrong_rate, data)
    stereo = tmp_path / "b.wav"
    _write_wav(stereo, channels=2)
    with pytest.raises(ValueError, match="mono"):
        mp.load_wav_spectrogram(stereo, data)
    not_audio = tmp_path / "c.wav"
    not_audio.write_text("hello")
    with pytest.raises(ValueError, match="cannot read audio"):
        mp.load_wav_spectrogram(not_audio, data)
    assert mp.spec_cache_path("x/y.WAV") == Path("x/y.spec.pt")
    assert mp.spec_cache_path("x/y.flac") == Path("x/y.flac.spec.pt")


def test_generator_output_is_not_copied_to_host_nor_warned(caplog) -> None:
    """Training calls this on y_hat (requires grad, out of [-1, 1] early on): no `requires_grad` UserWarning, no
    log line, no scalar conversion (which is a device->host copy on a GPU)."""
    import warnings

    y = (torch.randn(2, 4096) * 3).requires_grad_()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the requires_grad -> scalar UserWarning would fail here
        with caplog.at_level("WARNING", logger="bert_vits2.mel_processing"):
            mel = mp.mel_spectrogram_torch(y, 1024, 40, 16000, 256, 1024, 0.0, None)
    assert caplog.records == []
    mel.sum().backward()
    assert y.grad is not None and torch.isfinite(y.grad).all()
    # a tensor on another device is never inspected (a meta tensor would raise on any copy out of it)
    mp._warn_if_out_of_range(torch.empty(1, 4096, device="meta"))


def test_audio_from_disk_out_of_range_is_still_reported(caplog) -> None:
    y = torch.zeros(1, 4096)
    y[0, 100] = 1.5
    with caplog.at_level("WARNING", logger="bert_vits2.mel_processing"):
        mp.spectrogram_torch(y, 1024, 16000, 256, 1024)
    assert [r.getMessage() for r in caplog.records] == [
        "waveform outside [-1, 1] (min 0.000, max 1.500): features will not match training data"]
