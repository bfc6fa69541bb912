"""The numbers several parts of ``motion`` agree on, defined once."""

from __future__ import annotations

from bert_vits2.audio import TTS_SAMPLE_RATE

#: frame rate of every face curve this project writes ([T, 61] npy / CSV), the Live Link Face app's default
FACE_FPS = 60.0
#: Bert-VITS2 v2.3 hop length at 44.1 kHz: one z / spectrogram frame per 512 samples
HOP = 512
#: frames per second of z and of the heads' input features (86.1328125)
FEATURE_FPS = TTS_SAMPLE_RATE / HOP
#: body animation: HumanML3D / MotionGPT joint sequences are 20 fps; VMC is sent at 30 fps by default
SOURCE_BODY_FPS = 20.0
BODY_FPS = 30.0
#: Unreal Live Link Face listens on 11111; VMC receivers (VSeeFace, VMC4UE, ...) on 39539; the web UI on 7860
LIVELINK_PORT = 11111
VMC_PORT = 39539
WEBUI_PORT = 7860
#: servers and the web UI bind here unless asked otherwise
DEFAULT_HOST = "127.0.0.1"

__all__ = ["BODY_FPS", "DEFAULT_HOST", "FACE_FPS", "FEATURE_FPS", "HOP", "LIVELINK_PORT", "SOURCE_BODY_FPS",
           "TTS_SAMPLE_RATE", "VMC_PORT", "WEBUI_PORT"]
