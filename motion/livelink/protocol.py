"""Live Link Face v6 UDP packets: encode, decode, send and receive.

The packet layout (all big-endian) is documented in ``shared/spec/livelink.md`` §1::

    u8 version (6) | i32 len + device id (UTF-8) | i32 len + subject (UTF-8) | i32 frame number | f32 sub-frame
    | i32 rate numerator | i32 rate denominator | [u8 count (61) | 61 x f32 values]

The bracketed tail is absent in *header-only* packets, which the app sends while no face is tracked.
Values are in wire order (``motion.arkit.NAMES``).

Decoding never raises on untrusted bytes: :func:`decode_packet` returns a :class:`DecodeResult` holding either a
frame or a short reason (``short``, ``bad version``, ``bad lengths``, ``bad count``, ``bad text``, ``bad values``).
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import socket
import struct
import threading
import time
import uuid
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from bert_vits2.fileio import atomic_write, write_bytes_atomic
from motion import playback
from motion.arkit import NUM_VALUES, check_frames
from motion.constants import LIVELINK_PORT as DEFAULT_PORT

log = logging.getLogger(__name__)

PACKET_VERSION = 6

DEFAULT_SUBJECT = "BertVits2Face"
MAX_TEXT_BYTES = 1024  # Unreal accepts ids up to 256 characters; anything far longer is garbage

_I32 = struct.Struct(">i")
_TAIL = struct.Struct(">ifii")  # frame number, sub-frame, rate numerator, rate denominator
_VALUES = struct.Struct(">61f")
_BE_F32 = np.dtype(">f4")

# Reasons a packet is rejected (DecodeResult.reason starts with one of these).
REASON_SHORT = "short"
REASON_VERSION = "bad version"
REASON_LENGTHS = "bad lengths"
REASON_COUNT = "bad count"
REASON_TEXT = "bad text"
REASON_VALUES = "bad values"
REASON_RANGE = "out of range"
REASON_RATE = "bad rate"
# Reasons a decoded frame is ignored because it is not from the device/subject asked for (not counted as invalid).
IGNORED_DEVICE = "other device"
IGNORED_SUBJECT = "other subject"

# Documented ranges (spec §2): 0-51 are weights in [0, 1], 52-60 rotations in degrees/180 in [-1, 1]. A small margin
# keeps calibrated values that overshoot a little; anything beyond is a corrupt or spoofed packet (e.g. 3.4e38).
NUM_WEIGHTS = 52
VALUE_MARGIN = 0.1
MAX_PACKET_FPS = 1000.0


def default_device_id() -> str:
    """A 36-character UUID that is stable for this machine, so Unreal keeps seeing the same source."""
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"bert-vits2-face.{socket.gethostname()}")).upper()


def is_uuid_device_id(device_id: str) -> bool:
    """True for a 36-character UUID string (``8-4-4-4-12`` hex digits), the id the iPhone app sends."""
    if len(device_id) != 36:
        return False
    try:
        uuid.UUID(device_id)
    except ValueError:
        return False
    return True


def check_device_id(device_id: str, option: str = "--device-id") -> str:
    """Return ``device_id``; warn (one log line) when it is not a 36-character UUID.

    Unreal accepts any id up to 256 characters, but decoders that copy the app's layout (``pylivelinkface`` reads a
    fixed 36-byte id) misread every later field of a packet with another id; so say so once, at start.
    """
    if not is_uuid_device_id(device_id):
        log.warning("Live Link device id %r is not a 36-character UUID like %s: Unreal accepts it, but decoders that "
                    "expect the iPhone app's ids (pylivelinkface) will misread the packets; give %s a UUID or leave "
                    "it out", device_id, default_device_id(), option)
    return device_id


@dataclass
class LiveLinkFrame:
    """One Live Link Face packet's content. ``values`` is float32 [61] in wire order, or None (header-only)."""

    device_id: str
    subject: str
    frame_number: int
    sub_frame: float = 0.0
    fps_numerator: int = 60
    fps_denominator: int = 1
    values: np.ndarray | None = None

    @property
    def fps(self) -> float:
        return self.fps_numerator / self.fps_denominator if self.fps_denominator else float("nan")

    @property
    def header_only(self) -> bool:
        return self.values is None


@dataclass
class DecodeResult:
    """Outcome of decoding untrusted bytes: ``frame`` when valid, else ``reason`` says why it was rejected."""

    frame: LiveLinkFrame | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.frame is not None

    def __bool__(self) -> bool:
        return self.ok


def _text_bytes(text: str, what: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) > MAX_TEXT_BYTES:
        raise ValueError(f"{what} is {len(raw)} bytes long; keep it under {MAX_TEXT_BYTES} (Unreal takes 256 characters)")
    return raw


def encode_packet(frame: LiveLinkFrame) -> bytes:
    """Serialise a frame as a v6 packet (header-only when ``frame.values`` is None)."""
    dev = _text_bytes(frame.device_id, "device id")
    sub = _text_bytes(frame.subject, "subject name")
    parts = [
        bytes((PACKET_VERSION,)),
        _I32.pack(len(dev)), dev,
        _I32.pack(len(sub)), sub,
        _TAIL.pack(int(frame.frame_number), float(frame.sub_frame), int(frame.fps_numerator), int(frame.fps_denominator)),
    ]
    if frame.values is not None:
        values = np.asarray(frame.values, dtype=np.float32).reshape(-1)
        if values.shape[0] != NUM_VALUES:
            raise ValueError(f"a Live Link packet carries exactly {NUM_VALUES} values, got {values.shape[0]}")
        parts.append(bytes((NUM_VALUES,)))
        parts.append(values.astype(_BE_F32).tobytes())
    return b"".join(parts)


def _read_text(data: bytes, off: int, what: str) -> tuple[str | None, int, str | None]:
    if off + 4 > len(data):
        return None, off, f"{REASON_SHORT}: packet ends inside the {what} length"
    (n,) = _I32.unpack_from(data, off)
    off += 4
    if n < 0 or n > MAX_TEXT_BYTES:
        return None, off, f"{REASON_LENGTHS}: {what} length {n}"
    if off + n > len(data):
        return None, off, f"{REASON_LENGTHS}: {what} length {n} runs past the packet end"
    try:
        text = bytes(data[off : off + n]).decode("utf-8")
    except UnicodeDecodeError:
        return None, off, f"{REASON_TEXT}: {what} is not UTF-8"
    return text, off + n, None


def decode_packet(data: bytes | bytearray | memoryview) -> DecodeResult:
    """Decode one UDP payload. Never raises: a rejected packet comes back with ``reason`` set."""
    try:
        return _decode(data)
    except Exception as err:  # defensive: untrusted input must never escape as an exception
        return DecodeResult(reason=f"{REASON_LENGTHS}: undecodable ({type(err).__name__})")


def _decode(data) -> DecodeResult:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        return DecodeResult(reason=f"{REASON_SHORT}: not bytes ({type(data).__name__})")
    if isinstance(data, memoryview):
        data = data.tobytes()
    if len(data) < 1:
        return DecodeResult(reason=f"{REASON_SHORT}: empty packet")
    if data[0] != PACKET_VERSION:
        return DecodeResult(reason=f"{REASON_VERSION}: {data[0]} (expected {PACKET_VERSION})")
    device_id, off, why = _read_text(data, 1, "device id")
    if why:
        return DecodeResult(reason=why)
    subject, off, why = _read_text(data, off, "subject")
    if why:
        return DecodeResult(reason=why)
    if off + _TAIL.size > len(data):
        return DecodeResult(reason=f"{REASON_SHORT}: {len(data)} bytes, header needs {off + _TAIL.size}")
    frame_number, sub_frame, num, den = _TAIL.unpack_from(data, off)
    off += _TAIL.size
    frame = LiveLinkFrame(device_id, subject, frame_number, sub_frame, num, den, None)
    if off == len(data):
        return DecodeResult(frame=frame)  # header-only: no face tracked
    count = data[off]
    off += 1
    if count != NUM_VALUES:
        return DecodeResult(reason=f"{REASON_COUNT}: {count} values (expected {NUM_VALUES})")
    end = off + _VALUES.size
    if end > len(data):
        return DecodeResult(reason=f"{REASON_SHORT}: {len(data)} bytes, {end} needed for {NUM_VALUES} values")
    if end != len(data):
        return DecodeResult(reason=f"{REASON_LENGTHS}: {len(data) - end} bytes after the values")
    values = np.frombuffer(data, dtype=_BE_F32, count=NUM_VALUES, offset=off).astype(np.float32)
    if not np.isfinite(values).all() or not math.isfinite(sub_frame):
        return DecodeResult(reason=f"{REASON_VALUES}: NaN or infinite values")
    frame.values = values
    return DecodeResult(frame=frame)


def check_frame(frame: LiveLinkFrame) -> str | None:
    """Why a decoded frame must not be recorded (values outside the documented ranges, a nonsense rate), or None.

    :func:`decode_packet` already refuses NaN/inf; this refuses finite garbage such as 3.4e38 from a spoofed packet,
    which would otherwise be recorded, prepared and trained on.
    """
    num, den = frame.fps_numerator, frame.fps_denominator
    if num <= 0 or den <= 0 or num / den > MAX_PACKET_FPS:
        return f"{REASON_RATE}: {num}/{den} fps"
    if not 0.0 <= frame.sub_frame <= 1.0:
        return f"{REASON_RANGE}: sub-frame {frame.sub_frame:g} (expected 0..1)"
    if frame.values is None:
        return None
    v = np.asarray(frame.values, dtype=np.float32)
    w, r = v[:NUM_WEIGHTS], v[NUM_WEIGHTS:]
    if (w < -VALUE_MARGIN).any() or (w > 1.0 + VALUE_MARGIN).any():
        i = int(np.argmax((w < -VALUE_MARGIN) | (w > 1.0 + VALUE_MARGIN)))
        return f"{REASON_RANGE}: weight {i} is {float(w[i]):g} (expected 0..1)"
    if (np.abs(r) > 1.0 + VALUE_MARGIN).any():
        i = int(np.argmax(np.abs(r) > 1.0 + VALUE_MARGIN))
        return f"{REASON_RANGE}: rotation {NUM_WEIGHTS + i} is {float(r[i]):g} (expected -1..1, degrees/180)"
    return None


def frames_out_of_range(frames: np.ndarray) -> str | None:
    """Why a ``[T, 61]`` curve array holds values outside the documented ranges (as :func:`check_frame` refuses on
    receipt), or None. For takes recorded before packets were checked, or written by other tools."""
    v = np.asarray(frames, dtype=np.float32)
    if v.ndim != 2 or v.shape[1] != NUM_VALUES or not len(v):
        return None
    w, r = v[:, :NUM_WEIGHTS], v[:, NUM_WEIGHTS:]
    bad_w = (w < -VALUE_MARGIN) | (w > 1.0 + VALUE_MARGIN)
    if bad_w.any():
        t, i = np.argwhere(bad_w)[0]
        return f"{REASON_RANGE}: frame {t}, weight {i} is {float(w[t, i]):g} (expected 0..1); {int(bad_w.sum())} such value(s)"
    bad_r = np.abs(r) > 1.0 + VALUE_MARGIN
    if bad_r.any():
        t, i = np.argwhere(bad_r)[0]
        return (f"{REASON_RANGE}: frame {t}, rotation {NUM_WEIGHTS + i} is {float(r[t, i]):g} (expected -1..1); "
                f"{int(bad_r.sum())} such value(s)")
    return None


# --- capture files (LLV's ".gesichter": gzip of u8 version, u32 count, then u32 length + payload per packet) ---


def read_capture(path: str | Path) -> list[bytes]:
    """Read the raw packets of a ``.gesichter`` capture (as in ``shared/reference/livelink/dao.gesichter``)."""
    path = Path(path)
    try:
        data = gzip.open(path, "rb").read()
    except (OSError, EOFError) as err:
        raise ValueError(f"{path}: not a gzip Live Link capture ({err})") from err
    if len(data) < 5 or data[0] != PACKET_VERSION:
        raise ValueError(f"{path}: not a Live Link capture (container version {data[:1].hex() or 'missing'})")
    (count,) = struct.unpack_from(">I", data, 1)
    packets, off = [], 5
    for i in range(count):
        if off + 4 > len(data):
            raise ValueError(f"{path}: truncated after {i} of {count} packets")
        (n,) = struct.unpack_from(">I", data, off)
        off += 4
        if off + n > len(data):
            raise ValueError(f"{path}: packet {i} runs past the end of the file")
        packets.append(data[off : off + n])
        off += n
    return packets


def write_capture(path: str | Path, packets: Iterable[bytes]) -> None:
    """Write packets as a ``.gesichter`` capture, atomically."""
    packets = list(packets)
    body = bytearray(bytes((PACKET_VERSION,)) + struct.pack(">I", len(packets)))
    for p in packets:
        body += struct.pack(">I", len(p)) + p
    write_bytes_atomic(path, gzip.compress(bytes(body)))


# --- sending ---


@dataclass
class StreamStats:
    """What :meth:`LiveLinkSender.stream` did: frames sent and each frame's lateness vs its deadline (seconds)."""

    sent: int = 0
    lateness: list[float] = field(default_factory=list)
    duration_s: float = 0.0

    def summary_ms(self) -> dict[str, float]:
        if not self.lateness:
            return {"median": 0.0, "p99": 0.0, "max": 0.0}
        arr = np.abs(np.asarray(self.lateness)) * 1000.0
        return {"median": float(np.median(arr)), "p99": float(np.percentile(arr, 99)), "max": float(arr.max())}


class PacketLog:
    """A stand-in for the network (``--dry-run``): writes one JSON line per packet with its send and due times."""

    def __init__(self, path: str | Path, clock: Callable[[], float] | None = None) -> None:
        self.path = Path(path)
        self._writer = atomic_write(self.path, "w")  # published on close(), never half-written
        self._f = self._writer.__enter__()
        self.clock = clock
        self.count = 0
        self.due: float | None = None

    def __call__(self, packet: bytes) -> None:
        d = decode_packet(packet)
        rec = {
            "t": None if self.clock is None else round(self.clock(), 6),
            "due": None if self.due is None else round(self.due, 6),
            "frame": d.frame.frame_number if d.frame else None,
            "bytes": packet.hex(),
        }
        self._f.write(json.dumps(rec) + "\n")
        self.count += 1

    def close(self) -> None:
        if not self._f.closed:
            self._writer.__exit__(None, None, None)


def read_packet_log(path: str | Path) -> list[dict]:
    """Read a ``--dry-run`` packet log back: dicts with t, due, frame and the decoded ``packet`` (DecodeResult)."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            rec = json.loads(line)
            rec["packet"] = decode_packet(bytes.fromhex(rec.pop("bytes")))
            out.append(rec)
    return out


class LiveLinkSender:
    """Sends frames to Unreal's "Apple ARKit Face Live Link" source (or anything listening for the app's packets).

    ``transport`` replaces the UDP socket (any callable taking the packet bytes), e.g. a :class:`PacketLog`.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        subject: str = DEFAULT_SUBJECT,
        device_id: str | None = None,
        fps_numerator: int = 60,
        fps_denominator: int = 1,
        transport: Callable[[bytes], None] | None = None,
    ) -> None:
        self.host, self.port = host, int(port)
        self.subject = subject
        self.device_id = device_id or default_device_id()
        self.fps_numerator, self.fps_denominator = int(fps_numerator), int(fps_denominator)
        _text_bytes(self.subject, "subject name")
        _text_bytes(self.device_id, "device id")
        if device_id:
            check_device_id(self.device_id)
        self._transport = transport
        self._sock: socket.socket | None = None
        if transport is None:
            try:
                infos = socket.getaddrinfo(host, self.port, type=socket.SOCK_DGRAM)
            except socket.gaierror as err:
                raise ValueError(f"cannot resolve Live Link host {host!r} ({err}); give an IP address with --host") from err
            family, _, _, _, self._addr = infos[0]
            self._sock = socket.socket(family, socket.SOCK_DGRAM)
        self.packets_sent = 0
        self.send_errors = 0

    def frame(self, values: np.ndarray | None, frame_number: int, sub_frame: float = 0.0) -> LiveLinkFrame:
        return LiveLinkFrame(
            self.device_id, self.subject, int(frame_number), sub_frame, self.fps_numerator, self.fps_denominator,
            None if values is None else np.asarray(values, dtype=np.float32),
        )

    def send_packet(self, packet: bytes) -> None:
        if self._transport is not None:
            self._transport(packet)
        else:
            try:
                self._sock.sendto(packet, self._addr)
            except OSError as err:  # e.g. ICMP port unreachable on loopback: keep the schedule, count it
                self.send_errors += 1
                if self.send_errors == 1:
                    log.warning("sending to %s:%d failed (%s); continuing", self.host, self.port, err)
                return
        self.packets_sent += 1

    def send(self, values: np.ndarray | None, frame_number: int, sub_frame: float = 0.0) -> bytes:
        """Send one frame (61 values in wire order; None sends a header-only packet). Returns the packet."""
        packet = encode_packet(self.frame(values, frame_number, sub_frame))
        self.send_packet(packet)
        return packet

    def stream(
        self,
        frames: np.ndarray,
        fps: float,
        audio: np.ndarray | None = None,
        sample_rate: int | None = None,
        *,
        delay_s: float = 0.0,
        loop: bool = False,
        start_frame: int = 0,
        stop: threading.Event | None = None,
        clock=None,
        sleep: Callable[[float], None] | None = None,
        audio_device: int | str | None = None,
        on_frame: Callable[[int, float], None] | None = None,
    ) -> StreamStats:
        """Send ``frames`` [T, 61] at ``fps``, frame i due ``delay_s + i / fps`` after playback starts.

        With ``audio`` (mono float32 at ``sample_rate``) the audio is played and frames are scheduled from the audio
        stream's clock, so face and sound stay together for any length. A negative ``delay_s`` makes the face lead the
        audio. Frame numbers increment by one per frame from ``start_frame`` (also across loops). ``clock``/``sleep``
        replace the time source (tests and ``--dry-run`` use a virtual clock).
        """
        frames = check_frames(frames)
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.set_rate(fps)
        n = frames.shape[0]
        period = n / fps
        player = None
        if audio is not None and clock is None:
            if not sample_rate:
                raise ValueError("sample_rate is required with audio")
            audio = np.asarray(audio, dtype=np.float32).reshape(-1)
            lead = max(0.0, -delay_s)
            if lead > 0:  # face leads: start the sound later instead of sending frames before time 0
                audio = np.concatenate([np.zeros(int(round(lead * sample_rate)), np.float32), audio])
            if loop:  # one loop = the longer of sound and face; pad the sound so both repeat together
                need = int(math.ceil((period + lead) * sample_rate))
                if len(audio) < need:
                    audio = np.concatenate([audio, np.zeros(need - len(audio), np.float32)])
                period = len(audio) / sample_rate
            player = playback.AudioPlayer(audio, sample_rate, device=audio_device, loop=loop)
            clock = player
        clock = clock or playback.MonotonicClock()
        sched_delay = max(0.0, delay_s)  # a negative delay only has a meaning against audio (handled above)
        counter = {"k": 0}

        def send(i: int, due: float) -> None:
            number = start_frame + counter["k"]
            counter["k"] += 1
            if isinstance(self._transport, PacketLog):
                self._transport.due = due
            self.send(frames[i], number)
            if on_frame is not None:
                on_frame(number, due)

        kwargs = {"sleep": sleep} if sleep is not None else {}
        t0 = time.perf_counter()
        if player is not None:
            player.start()
        try:
            sched = playback.run_schedule(n, fps, send, clock=clock, delay_s=sched_delay, loop=loop, stop=stop, period_s=period, **kwargs)
            if player is not None and not loop:
                # Let the sound finish (it may outlast the frames) unless asked to stop.
                while not player.finished.is_set() and not (stop is not None and stop.is_set()):
                    player.finished.wait(0.05)
        finally:
            if player is not None:
                player.stop()
        return StreamStats(sent=sched.sent, lateness=sched.lateness, duration_s=time.perf_counter() - t0)

    def set_rate(self, fps: float) -> None:
        """Declare ``fps`` in the packets (as N/1 for whole rates, else as a fraction over 1000)."""
        frac = Fraction(fps).limit_denominator(1000)
        self.fps_numerator, self.fps_denominator = frac.numerator, frac.denominator

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if isinstance(self._transport, PacketLog):
            self._transport.close()

    def __enter__(self) -> "LiveLinkSender":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --- receiving ---


class PortInUseError(RuntimeError):
    """The UDP port is taken by another program."""


class LiveLinkReceiver:
    """A UDP socket that receives Live Link Face packets (what Unreal does; used by the recorder)."""

    def __init__(self, host: str = "0.0.0.0", port: int = DEFAULT_PORT, recv_buffer: int = 4 << 20) -> None:
        self._sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, recv_buffer)
        except OSError:
            pass
        try:
            self._sock.bind((host, int(port)))
        except OSError as err:
            self._sock.close()
            raise PortInUseError(
                f"cannot listen on {host}:{port} ({err.strerror or err}): another program (a second recorder, Unreal's "
                f"Live Link source on this machine) may hold the port; close it or choose another with --port"
            ) from err
        self.address: tuple[str, int] = self._sock.getsockname()[:2]

    def receive(self, timeout: float | None = 0.1) -> bytes | None:
        """The next datagram's payload, or None after ``timeout`` seconds without one."""
        self._sock.settimeout(timeout)
        try:
            data, _ = self._sock.recvfrom(65535)
        except (socket.timeout, BlockingIOError):
            return None
        except OSError:
            if self._sock.fileno() < 0:
                return None
            raise
        return data

    def drain(self) -> int:
        """Discard datagrams already queued; returns how many."""
        n = 0
        self._sock.setblocking(False)
        try:
            while True:
                self._sock.recvfrom(65535)
                n += 1
        except (BlockingIOError, InterruptedError):
            pass
        finally:
            self._sock.setblocking(True)
        return n

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> "LiveLinkReceiver":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class ReceivedFrame:
    frame: LiveLinkFrame
    arrival: float  # on the collector's clock


@dataclass
class PacketTally:
    """Counts and keeps what arrived: valid frames with arrival times, header-only and invalid packets by reason.

    Frames are validated on receipt (:func:`check_frame`); with ``accept_device`` / ``accept_subject`` set, frames
    of other phones or subjects are counted as ignored and not kept (a second phone on the network, a spoofer).
    """

    received: int = 0
    header_only: int = 0
    invalid: int = 0
    invalid_reasons: dict[str, int] = field(default_factory=dict)
    frames: list[ReceivedFrame] = field(default_factory=list)
    last_arrival: float | None = None
    accept_device: str | None = None
    accept_subject: str | None = None
    ignored: int = 0
    ignored_reasons: dict[str, int] = field(default_factory=dict)

    def add(self, packet: bytes, arrival: float) -> DecodeResult:
        self.received += 1
        self.last_arrival = arrival
        res = decode_packet(packet)
        if res.frame is not None:
            why = check_frame(res.frame)
            if why is not None:
                res = DecodeResult(reason=why)
        if res.frame is not None and (
            (self.accept_device is not None and res.frame.device_id != self.accept_device)
            or (self.accept_subject is not None and res.frame.subject != self.accept_subject)
        ):
            key = IGNORED_DEVICE if self.accept_device is not None and res.frame.device_id != self.accept_device \
                else IGNORED_SUBJECT
            self.ignored += 1
            self.ignored_reasons[key] = self.ignored_reasons.get(key, 0) + 1
            return DecodeResult(reason=f"{key}: {res.frame.device_id} / {res.frame.subject}")
        if res.frame is None:
            self.invalid += 1
            key = (res.reason or "").split(":")[0]
            self.invalid_reasons[key] = self.invalid_reasons.get(key, 0) + 1
        elif res.frame.values is None:
            self.header_only += 1
        else:
            self.frames.append(ReceivedFrame(res.frame, arrival))
        return res


class ReceiverThread(threading.Thread):
    """Receives packets in the background into a :class:`PacketTally`, stamping arrivals with ``clock()``."""

    def __init__(self, receiver: LiveLinkReceiver, clock: Callable[[], float], tally: PacketTally | None = None) -> None:
        super().__init__(daemon=True, name="livelink-receiver")
        self.receiver = receiver
        self.clock = clock
        self.tally = tally if tally is not None else PacketTally()
        self.lock = threading.Lock()
        self._stop_event = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self._stop_event.is_set():
                data = self.receiver.receive(0.05)
                if data is None:
                    continue
                t = self.clock()
                with self.lock:
                    self.tally.add(data, t)
        except BaseException as err:  # surfaced by the recorder, which saves what it has
            self.error = err

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=2.0)


def frames_to_packets(
    frames: np.ndarray, device_id: str, subject: str, fps: float = 60.0, start_frame: int = 0
) -> list[bytes]:
    """Encode a whole [T, 61] clip as consecutive packets (handy for tests and captures)."""
    frac = Fraction(fps).limit_denominator(1000)
    return [
        encode_packet(LiveLinkFrame(device_id, subject, start_frame + i, 0.0, frac.numerator, frac.denominator, row))
        for i, row in enumerate(np.asarray(frames, dtype=np.float32))
    ]


__all__ = [
    "DEFAULT_PORT", "DEFAULT_SUBJECT", "DecodeResult", "LiveLinkFrame", "LiveLinkReceiver", "LiveLinkSender",
    "PACKET_VERSION", "PacketLog", "PacketTally", "PortInUseError", "ReceivedFrame", "ReceiverThread", "StreamStats",
    "check_device_id", "check_frame", "decode_packet", "default_device_id", "is_uuid_device_id",
    "frames_out_of_range", "encode_packet", "frames_to_packets", "read_capture", "read_packet_log", "write_capture",
]
