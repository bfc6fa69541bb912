"""Live Link Face: the v6 UDP packet codec, sender and receiver (``protocol``), the app's CSV (``app_csv``), the take
format in ``records/`` (``take``), the recorder (``recorder``) with its crash-safe partial takes (``partial``) and clip
replay to Unreal (``replay``)."""

from motion.livelink.protocol import (  # noqa: F401 - the package's public API
    DEFAULT_PORT,
    DEFAULT_SUBJECT,
    PACKET_VERSION,
    DecodeResult,
    LiveLinkFrame,
    LiveLinkReceiver,
    LiveLinkSender,
    PacketLog,
    PacketTally,
    PortInUseError,
    ReceivedFrame,
    ReceiverThread,
    StreamStats,
    __all__,  # noqa: F401
    decode_packet,
    default_device_id,
    encode_packet,
    frames_to_packets,
    read_capture,
    read_packet_log,
    write_capture,
)
