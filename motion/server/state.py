"""What the routes share: the config, the loaded voices, the face maker, admission and the job pool."""

from __future__ import annotations

import logging
import threading
from typing import Any, Iterator

from bert_vits2.request import SynthesisRequest
from bert_vits2.streaming import StreamOptions
from motion.demo_voice import DemoVoice
from motion.face.api import FaceMaker
from motion.face.streaming import face_function, with_faces
from motion.server.config import ServerConfig
from motion.server.errors import ApiError
from motion.server.jobs import Admission, BlockingStream, JobPool
from motion.server.registry import Entry, ModelRegistry, api_language
from motion.server.system import usable_device

log = logging.getLogger(__name__)

__all__ = ["ServerState"]

FACE_FPS = 60.0


class ServerState:
    """Built once per app. The face maker is loaded at start, so a bad ``--head`` stops the server with one line
    instead of failing every face request."""

    def __init__(self, config: ServerConfig, registry: ModelRegistry | None = None) -> None:
        self.config = config
        self.registry = registry or ModelRegistry(config.model_roots, config.bert_dir, config.precision,
                                                  base_dir=config.base_dir, bert_precision=config.bert_precision)
        self.admission = Admission(config.workers, config.max_queue)
        self.pool = JobPool()
        self.face_maker = FaceMaker(head_path=config.head, alive=config.face_alive, seed=int(config.face_seed))

    def load_initial(self) -> None:
        """The configured voices (each with its own file, config, language and device; a device this machine lacks
        falls back to the CPU with a warning), one warning line per voice that lacks BERT folders, then the demo
        voice when asked for or when there is no other."""
        for spec in self.config.model_specs():
            what = f"{spec.source}.device" if spec.device else "the server's device (--device, config.yml server.device)"
            device, _ = usable_device(spec.device or self.config.device, f"{what} for {spec.model}")
            language = api_language(spec.language or self.config.language)
            mid = self.registry.load_dir(spec.folder, device=device, language=language,
                                         checkpoint=spec.checkpoint, config=spec.config)
            entry = self.registry.get(mid)
            log.info("model %d: %s (%s, %s)", mid, entry.model_path, entry.language, device)
            missing = entry.missing_bert()
            if missing:
                log.warning("model %d (%s): %s", mid, entry.model_path, missing)
        if self.config.demo_voice or not self.config.model_dirs:
            language = "EN" if not self.config.model_dirs else self.config.language
            mid = self.registry.add_voice(DemoVoice(), "demo", "", "cpu", language)
            log.info("model %d: the eSpeak NG demo voice", mid)

    def synthesis(self, entry: Entry, request: SynthesisRequest, with_face: bool,
                  options: StreamOptions | None = None, streamed: dict[str, Any] | None = None) -> BlockingStream:
        """The voice's stream of ``request`` (faced chunks when ``with_face``), stepped in the job pool; chunks past
        the server's ``max_audio_s`` end it with 413. ``streamed``: ``text_pieces`` (an iterable the client fills)
        and ``min_clause_chars`` for text that arrives in pieces."""
        voice = entry.voice
        max_samples = int(self.config.max_audio_s * voice.sample_rate)
        face = face_function(self.face_maker) if with_face else None

        def make(cancel: threading.Event) -> Iterator[Any]:
            chunks = voice.stream(request, options=options, cancel=cancel, **(streamed or {}))
            return _limited(with_faces(chunks, face, FACE_FPS) if face else chunks, max_samples,
                            self.config.max_audio_s)

        return self.pool.stream(make)


def _limited(items: Iterator[Any], max_samples: int, max_audio_s: float) -> Iterator[Any]:
    """``items`` until one reaches past ``max_samples`` (413); closing this closes ``items`` (and the voice's
    stream with it)."""
    try:
        for item in items:
            if getattr(item, "chunk", item).end_sample > max_samples:
                raise ApiError(413, f"the speech is longer than this server's limit of {max_audio_s:g} s per "
                                    "request: split the text")
            yield item
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()
