"""The gradio web app behind ``webui.py`` (``app``)."""
