"""Stream face curves to Unreal over Live Link (as the iPhone app does) while playing the matching audio.

    python motion/tts2ue.py records/2023-12-23-17-19-54                      # replay a recorded take
    python motion/tts2ue.py --bs_npy_file records/X.npy --wav_file records/X.wav --fps 60
    python motion/tts2ue.py --bs_npy_file out/tmp.npy --wav_file out/tmp.wav --delay_ms 100
    python motion/tts2ue.py --csv Slate_3_iPhone.csv --wav_file Slate_3.mov  # a Live Link Face app CSV

In Unreal: Window > Virtual Production > Live Link > Source > "Apple ARKit Face Live Link", then pick the subject in the
MetaHuman's Live Link settings. Frames are resampled to --send-fps, numbered 0, 1, 2, ... and scheduled from the audio
output's clock, so face and sound stay together for any length.
"""

from __future__ import annotations

import argparse
import logging
import sys

from motion.cli import user_error_types
from motion.inputs import bounded_float, cli_parser, port_number
from motion.livelink import DEFAULT_PORT, DEFAULT_SUBJECT
from motion.livelink.replay import run

FPS = bounded_float(1.0, 1000.0)


def build_parser() -> argparse.ArgumentParser:
    p = cli_parser(
        "tts2ue.py",
        description="Send face curves to Unreal's Live Link (Apple ARKit Face source) in sync with their audio.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("take", nargs="?", default=None, help="a take to replay: records/<name> (its .npy, .wav and .json)")
    p.add_argument("--bs_npy_file", "--npy", dest="npy", default=None, help="[T, 61] curves in Live Link order (.npy)")
    p.add_argument("--wav_file", "--wav", dest="wav", default=None, help="audio to play with the curves (wav, mp3, mov, ...)")
    p.add_argument("--csv", default=None, help="send a Live Link Face app CSV instead of an npy")
    p.add_argument("--fps", type=FPS, default=None,
                   help="frame rate of the npy (default: the take's JSON, else inferred from the audio's length, else 60)")
    p.add_argument("--send-fps", type=FPS, default=60.0, help="rate of the frames sent (curves are resampled to it)")
    p.add_argument("--delay_ms", "--delay-ms", dest="delay_ms", type=bounded_float(-60000.0, 60000.0), default=0.0,
                   help="send the face this much later than the sound (negative: earlier), to match Unreal's latency")
    p.add_argument("--host", default="127.0.0.1", help="machine running Unreal")
    p.add_argument("--port", type=port_number, default=DEFAULT_PORT, help="Live Link Face UDP port in Unreal")
    p.add_argument("--subject", default=DEFAULT_SUBJECT, help="Live Link subject name shown in Unreal")
    p.add_argument("--device-id", default=None, help="device UUID in the packets (default: stable per machine)")
    p.add_argument("--vts", nargs="?", const="127.0.0.1:8001", default=None, metavar="HOST:PORT",
                   help="also drive a Live2D model in VTube Studio through its plugin API (default address "
                   "127.0.0.1:8001; allow the plugin in VTube Studio the first time)")
    p.add_argument("--no-audio", action="store_true", help="do not play audio (frames are timed by the system clock)")
    p.add_argument("--audio-device", default=None, help="output device index or name for the audio")
    p.add_argument("--loop", action="store_true", help="repeat until Ctrl-C (frame numbers keep counting)")
    p.add_argument("--blink", action=argparse.BooleanOptionalAction, default=None,
                   help="add periodic blinks (default: only when the clip never blinks)")
    p.add_argument("--mirror", action="store_true", help="make the face symmetric (each left/right pair gets its max)")
    p.add_argument("--zero-head", action="store_true", help="send head and eye rotations as 0")
    p.add_argument("--dry-run", metavar="OUT", default=None,
                   help="write the packets with their send times to OUT (JSON lines) instead of the network")
    p.add_argument("--virtual-clock", action="store_true",
                   help="simulate time instead of waiting (with --dry-run: check a schedule instantly; implies --no-audio)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        s = run(args)
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
        return 130
    except (RuntimeError, *user_error_types()) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    e = s["timing_error_ms"]
    print(f"sent {s['frames_sent']} frames at {s['fps']:g} fps to {s['target']} in {s['seconds']:.2f} s; timing error "
          f"median {e['median']:.2f} ms, p99 {e['p99']:.2f} ms, max {e['max']:.2f} ms", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
