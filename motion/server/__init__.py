"""The HTTP / WebSocket server (``server_fastapi.py``): upstream-compatible ``/voice`` and ``/models/*``, speech with a
face, streaming, optional face push. Nothing heavy is imported here: FastAPI is loaded by :func:`create_app`."""

from motion.server.config import ServerConfig, ServerConfigError, read_yaml_section


def create_app(config: ServerConfig, *, load: bool = True):
    """The FastAPI app for ``config`` (see :mod:`motion.server.app`)."""
    from motion.server.app import create_app as _create

    return _create(config, load=load)


__all__ = ["ServerConfig", "ServerConfigError", "create_app", "read_yaml_section"]
