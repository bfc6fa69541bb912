"""Streaming synthesis (bert_vits2.streaming, Voice.stream, DemoVoice.stream) and streamed faces
(motion.face.streaming): the joined stream equals the batch result within 1e-4, faces at chunk boundaries too."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from bert_vits2.streaming import StreamOptions, chunk_spans, decode_chunk, decoder_context_frames
from bert_vits2.synthesis import SynthesisError, Voice, find_model_files
from motion.face.api import FaceMaker
from motion.face.streaming import (
    AudioFaceStream,
    face_for_audio_segmented,
    face_function,
    piecewise_face,
    piecewise_frames,
    with_faces,
)

TOL = 1e-4
TEXT = "你好。今天天气很好。我们去公园散步吧！"


@pytest.fixture(scope="module")
def voice(bv2_ref, tmp_path_factory) -> Voice:
    from webui_helpers import make_tiny_voice

    folder = make_tiny_voice(bv2_ref, tmp_path_factory.mktemp("voice"))
    return Voice.load(find_model_files(folder))


def _join(chunks):
    """Audio, z and face of a stream's chunks (faced chunks from ``with_faces``, or the voice's own)."""
    faced = hasattr(chunks[0], "face")
    plain = [c.chunk for c in chunks] if faced else chunks
    audio = np.concatenate([c.audio for c in plain])
    zs = [c.z for c in plain if c.z is not None and c.z.shape[1]]
    z = np.concatenate(zs, axis=1) if zs else None
    face = np.concatenate([c.face for c in chunks], axis=0) if faced else None
    return audio, z, face


def test_chunk_spans_and_context():
    assert chunk_spans(100, 16, 64) == [(0, 16), (16, 32), (32, 64), (64, 100)]  # each as long as all before it
    spans = chunk_spans(300, 16, 64)
    assert spans[:5] == [(0, 16), (16, 32), (32, 64), (64, 128), (128, 192)]  # then max_frames
    assert spans[-1] == (256, 300) and all(a < b for a, b in spans)
    assert chunk_spans(5, 16, 64) == [(0, 5)] and chunk_spans(0) == []
    v23 = {"upsample_rates": [8, 8, 2, 2, 2], "upsample_kernel_sizes": [16, 16, 8, 2, 2],
           "resblock": "1", "resblock_kernel_sizes": [3, 7, 11], "resblock_dilation_sizes": [[1, 3, 5]] * 3}
    assert 12 <= decoder_context_frames(v23, margin=0) <= 20


def test_chunked_decoder_equals_whole_decode(voice):
    """The HiFi-GAN decoded in chunks with context equals the one-call decode (full-size v2.3 decoder shape too)."""
    torch.manual_seed(0)
    ctx = decoder_context_frames(voice.hps.model)
    z = torch.randn(1, voice.hps.model.inter_channels, 80)
    g = torch.randn(1, voice.hps.model.gin_channels, 1)
    with torch.no_grad():
        whole = voice.model.dec(z, g=g)[0, 0].numpy()
    parts = [decode_chunk(voice.model.dec, z, g, a, b, voice.hop, ctx) for a, b in chunk_spans(80, 7, 40)]
    err = np.abs(np.concatenate(parts) - whole).max()
    assert err < 1e-5, err
    # with too little context the chunk edges differ: the context is what makes it exact
    parts0 = [decode_chunk(voice.model.dec, z, g, a, b, voice.hop, 0) for a, b in chunk_spans(80, 7, 40)]
    assert np.abs(np.concatenate(parts0) - whole).max() > 1e-3


@pytest.mark.parametrize("split", [True, pytest.param(False, marks=pytest.mark.slow)])
def test_voice_stream_equals_synthesize(voice, split):
    kw = dict(split_sentences=split, sentence_pause_s=0.3, seed=7)
    result = voice.synthesize(TEXT, "bob", "ZH", **kw)
    chunks = list(voice.stream(TEXT, "bob", "ZH", options=StreamOptions(5, 20), **kw))
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert chunks[-1].last and not any(c.last for c in chunks[:-1])
    assert len(chunks) > (6 if split else 3)  # several chunks per piece
    audio, z, _ = _join(chunks)
    assert len(audio) == len(result.audio)
    err = float(np.abs(audio - result.audio).max())
    assert err < TOL, err
    assert z.shape == result.z.shape and np.abs(z - result.z).max() < 1e-6
    pos = 0
    for c in chunks:  # chunk positions tile the stream
        assert c.start_sample == pos
        pos += len(c.audio)
    if split:
        assert max(c.piece for c in chunks) == 2 and any(c.pause for c in chunks)


@pytest.mark.slow
def test_voice_stream_mix_runs_decode_in_slice_context(voice):
    """A mix slice is one generator call: the stream decodes each run with the slice around it as context."""
    text = "[alice]<zh>你好。<en>Hello there.<zh>再见。"
    result = voice.synthesize(text, None, "mix", seed=2)
    chunks = list(voice.stream(text, None, "mix", seed=2, options=StreamOptions(4, 8)))
    audio, _, _ = _join(chunks)
    assert len(audio) == len(result.audio) and np.abs(audio - result.audio).max() < TOL


@pytest.mark.slow
def test_voice_stream_face_equals_piecewise_face(voice):
    maker = FaceMaker(use_default_head=False, alive=True, seed=1)
    result = voice.synthesize(TEXT, "alice", "ZH", split_sentences=True, seed=5)
    whole = piecewise_face(maker, result)
    assert len(whole.frames) == int(np.ceil(result.duration_s * 60 - 1e-6))
    chunks = list(with_faces(voice.stream(TEXT, "alice", "ZH", split_sentences=True, seed=5,
                                          options=StreamOptions(6, 12)), face_function(maker), 60.0))
    _, _, face = _join(chunks)
    assert face.shape == whole.frames.shape
    assert np.abs(face - whole.frames).max() < TOL
    starts = [c.face_start for c in chunks]
    assert starts == sorted(starts) and all(c.face_start + len(c.face) == n.face_start for c, n in zip(chunks, chunks[1:]))
    # the default mel head on the audio (a face that waits for each piece): the (float-rounding) audio difference must
    # not show in the face either
    maker2 = FaceMaker(alive=True, seed=1, result_source="audio")
    whole2 = piecewise_face(maker2, result)
    chunks2 = list(with_faces(voice.stream(TEXT, "alice", "ZH", split_sentences=True, seed=5),
                              face_function(maker2), 60.0))
    err = float(np.abs(_join(chunks2)[2] - whole2.frames).max())
    assert err < TOL, err


def _producers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "bv2-stream-producer"]


def test_cpu_stream_runs_in_the_callers_thread_and_cancels(voice):
    """On the CPU no producer thread (a second thread running torch slows both: see bert_vits2.streaming); closing
    the stream mid-way releases the voice."""
    text = "。".join(["今天天气很好"] * 6) + "。"
    before = set(_producers())
    gen = voice.stream(text, "bob", "ZH", split_sentences=True, cancel=threading.Event())
    first = next(gen)
    assert first.audio.size and first.timings["ready_s"] > 0
    assert set(_producers()) == before, "a CPU stream started a producer thread"
    gen.close()
    assert voice._lock.acquire(blocking=False), "the voice's lock is still held after the stream was closed"
    voice._lock.release()


def test_pipelined_stream_equals_the_in_thread_one_and_stops_its_producer(voice):
    from bert_vits2.streaming import StreamOptions

    text = "。".join(["今天天气很好"] * 6) + "。"
    plain = np.concatenate([c.audio for c in voice.stream(text, "bob", "ZH", split_sentences=True, seed=4)])
    piped = list(voice.stream(text, "bob", "ZH", split_sentences=True, seed=4, options=StreamOptions(pipeline=True)))
    np.testing.assert_array_equal(np.concatenate([c.audio for c in piped]), plain)
    # paced chunks follow the playback lead (timing): the same audio within float rounding, not bit for bit
    paced = [c.audio for c in voice.stream(text, "bob", "ZH", split_sentences=True, seed=4,
                                           options=StreamOptions(pace=True))]
    np.testing.assert_allclose(np.concatenate(paced), plain, atol=TOL, rtol=0)
    gen = voice.stream(text, "bob", "ZH", split_sentences=True, options=StreamOptions(pipeline=True))
    next(gen)
    producers = _producers()
    assert producers, "pipeline=True runs a producer thread"
    gen.close()  # the producer stops after the piece it is working on
    for t in producers:
        t.join(timeout=30)
        assert not t.is_alive(), "the producer thread still runs after the stream was closed"
    assert voice._lock.acquire(blocking=False), "the voice's lock is still held after the stream was closed"
    voice._lock.release()
    with pytest.raises(SynthesisError, match="empty"):
        list(voice.stream("  "))
    with pytest.raises(SynthesisError, match="alice, bob"):
        next(voice.stream("你好", "nobody"))


@pytest.mark.slow
def test_stream_rng_independent_of_other_requests(voice):
    """A seeded stream draws the same noise when other requests run between its pieces."""
    kw = dict(split_sentences=True, seed=11)
    ref = voice.synthesize(TEXT, "bob", "ZH", **kw)
    out = []
    for c in voice.stream(TEXT, "bob", "ZH", **kw):
        out.append(c.audio)
        if c.pause:
            voice.synthesize("好", "alice", "ZH", seed=None)  # moves the global RNG in between
    assert np.abs(np.concatenate(out) - ref.audio).max() < TOL


def test_seeded_requests_do_not_depend_on_concurrent_requests(voice):
    """Each request draws from its own generator: the same seed gives the same audio whether the request runs alone
    or while other requests run in other threads (today's server runs two workers on one voice)."""
    alone = voice.synthesize("今天天气很好。", "bob", "ZH", seed=3).audio
    torch.manual_seed(123)  # the global RNG plays no part in a seeded request
    results: dict[int, np.ndarray] = {}

    def run(i: int) -> None:
        results[i] = voice.synthesize("今天天气很好。", "bob", "ZH", seed=3 if i % 2 == 0 else None).audio

    threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for i in (0, 2, 4):
        assert np.array_equal(results[i], alone)
    # and without a seed the draws differ from the seeded ones (the check above is not vacuous)
    assert any(not np.array_equal(results[i], alone) for i in (1, 3, 5) if len(results[i]) == len(alone)) or \
        any(len(results[i]) != len(alone) for i in (1, 3, 5))


def test_demo_voice_stream_equals_synthesize(monkeypatch):
    from motion import espeak_tts
    from motion.demo_voice import DemoVoice

    # eSpeak NG itself varies by a few samples from call to call: replay one take per text so both paths get the same
    takes: dict = {}
    real = espeak_tts.synthesize
    monkeypatch.setattr(espeak_tts, "synthesize", lambda *a, **k: takes.setdefault((a, tuple(k.items())), real(*a, **k)))
    demo = DemoVoice()
    text = "Hello there. This is a streamed demo voice!"
    result = demo.synthesize(text, None, "EN", split_sentences=True)
    maker = FaceMaker(use_default_head=False, seed=2)
    chunks = list(with_faces(demo.stream(text, None, "EN", split_sentences=True), face_function(maker), 60.0))
    audio, _, face = _join(chunks)
    assert np.array_equal(audio, result.audio)
    whole = piecewise_frames(result, face_function(maker), 60.0)
    assert face.shape == whole.shape and np.abs(face - whole).max() < TOL


def test_audio_face_stream_chunking_does_not_matter():
    from motion.demo_voice import DemoVoice

    result = DemoVoice().synthesize("Hello there. This is a test of streaming faces.", None, "EN",
                                    split_sentences=True, sentence_pause_s=0.4)
    maker = FaceMaker(seed=3)
    ref = face_for_audio_segmented(maker, result.audio, result.sample_rate, max_segment_s=1.0)
    assert len(ref.frames) == int(np.ceil(result.duration_s * 60 - 1e-6))
    rng = np.random.default_rng(0)
    stream = AudioFaceStream(maker, result.sample_rate, max_segment_s=1.0)
    pcm16 = (np.clip(result.audio, -1, 1) * 32767).astype(np.int16)
    got, pos = [], 0
    while pos < len(pcm16):
        n = int(rng.integers(50, 6000))
        got += stream.feed(pcm16[pos:pos + n])
        pos += n
    got += stream.close()
    frames = np.concatenate([g.frames for g in got])
    assert [g.start for g in got] == list(np.cumsum([0] + [len(g.frames) for g in got[:-1]]))
    ref16 = face_for_audio_segmented(maker, pcm16, result.sample_rate, max_segment_s=1.0)
    assert frames.shape == ref16.frames.shape and np.abs(frames - ref16.frames).max() < TOL
    assert len(got) >= 3  # cut at the pauses / every second


def test_sentence_stream_cuts_where_the_whole_text_is_cut():
    """Text arriving in random pieces gives exactly the sentences split_text(by_sentence) gives the whole text."""
    from bert_vits2.synthesis import SentenceStream, split_text

    rng = np.random.default_rng(4)
    texts = ["你好。今天天气很好！我们去公园散步吧？好的…走吧", "Hello there. This is 3.5 times better!? Yes.\nNext line",
             "A...B. C", "一句话", "Line one\nline two\n\nthree。"]
    for text in texts:
        for _ in range(30):
            stream, got, i = SentenceStream(), [], 0
            while i < len(text):
                n = int(rng.integers(1, 6))
                got += stream.feed(text[i:i + n])
                i += n
            got += stream.close()
            assert got == [p for p, _ in split_text(text, by_sentence=True)], text
    # a sentence is handed out as soon as its end punctuation arrives, before the next text
    stream = SentenceStream()
    assert stream.feed("你好") == [] and stream.feed("。今天") == ["你好。"] and stream.close() == ["今天"]
    clauses = SentenceStream(min_clause_chars=4)
    assert clauses.feed("今天天气很好，我们") == ["今天天气很好，"] and clauses.feed("去吧。") == ["我们去吧。"]


def test_voice_stream_of_text_pieces_equals_whole_text(voice):
    """Voice.stream over text pieces (a token generator) gives the whole text's audio with split_sentences, and the
    first sentence is synthesised before the rest of the text has arrived."""
    text = "你好。今天天气很好！我们去公园散步吧。"
    whole = voice.synthesize(text, "bob", "ZH", split_sentences=True, sentence_pause_s=0.3, seed=8)
    first_audio = threading.Event()
    held_back: list[bool] = []

    def tokens():
        for i in range(0, len(text), 2):
            if i >= 4:  # past the first sentence: the rest of the text waits until the first audio is out
                held_back.append(first_audio.wait(timeout=60))
            yield text[i:i + 2]

    chunks = []
    for c in voice.stream(tokens(), "bob", "ZH", sentence_pause_s=0.3, seed=8, options=StreamOptions(6, 24)):
        first_audio.set()
        chunks.append(c)
    audio = np.concatenate([c.audio for c in chunks])
    assert len(audio) == len(whole.audio) and np.abs(audio - whole.audio).max() < TOL
    assert held_back and all(held_back)  # speech started while the text was still arriving
    with pytest.raises(SynthesisError, match="mix"):
        next(voice.stream(iter(["[bob]<zh>你好。"]), None, "mix"))


def test_face_from_phones_goes_out_with_each_chunk(voice):
    """The default face of a synthesis result is made from the piece's phones (known before its audio is decoded):
    each chunk leaves with its own frames, before the next chunk of the piece is decoded, and the frames equal the
    finished result's face exactly. Lips are sealed on every bilabial."""
    from motion.arkit import INDEX

    maker = FaceMaker(seed=4)
    assert maker.result_face == "phones" and not maker.result_needs_audio
    result = voice.synthesize(TEXT, "alice", "ZH", split_sentences=True, seed=5)
    whole = piecewise_face(maker, result).frames
    pulled = []

    def counted():
        for c in voice.stream(TEXT, "alice", "ZH", split_sentences=True, seed=5, options=StreamOptions(4, 8)):
            pulled.append(c.index)
            yield c

    faced = []
    for fc in with_faces(counted(), face_function(maker), 60.0):
        faced.append((fc, len(pulled)))
    first, pulled_then = faced[0]
    assert pulled_then == 1 and len(first.face) > 0  # chunk 0 left with its frames before chunk 1 was decoded
    frames = np.concatenate([fc.face for fc, _ in faced])
    assert frames.shape == whole.shape and np.array_equal(frames, whole)
    for fc, _ in faced[:-1]:  # every chunk's frames are the ones whose centres lie in its audio
        k0, k1 = fc.face_start, fc.face_start + len(fc.face)
        assert k1 <= int(np.ceil(fc.chunk.end_s * 60 - 0.5 + 1e-9)) + 1 and k0 >= int(fc.chunk.start_s * 60 - 0.5)
    # bilabials: MouthClose high / JawOpen low at the centre of every m / b / p phone of the result
    starts = np.cumsum(result.durations) - result.durations
    checked = 0
    for ph, t0, d in zip(result.phones, starts, result.durations):
        if ph in ("m", "b", "p") and d * 60 >= 1:
            k = int((t0 + d / 2) * 60)
            assert frames[k, INDEX["JawOpen"]] < 0.15, (ph, t0)
            checked += 1
    assert checked >= 2  # 们, 步, 吧
