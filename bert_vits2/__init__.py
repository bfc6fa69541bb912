"""Bert-VITS2 v2.3: a clean-room, checkpoint-compatible implementation (MIT)."""
