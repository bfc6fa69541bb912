"""``config.yml``: upstream Bert-VITS2's one settings file for its tools (spec §6, upstream ``config.py``).

Upstream users run ``resample.py``, ``preprocess_text.py``, ``bert_gen.py``, ``train_ms.py`` and ``webui.py`` with no
arguments: each reads its own section of ``config.yml`` (``-y/--yml_config`` picks another file), and relative paths
in a section are joined with ``dataset_path`` (e.g. ``Data/<name>/``). Here:

- :func:`load_yml` reads a file (a user's upstream ``config.yml`` works: unknown sections/keys are ignored);
- :func:`section_values` gives one tool's values as ``{argparse dest: value}`` with paths joined;
- :func:`apply_yml` fills those into parsed arguments, **except options given on the command line, which win**;
- :func:`write_default_yml` writes the default file. As upstream, a tool started with no arguments and without a
  ``config.yml`` (or with ``-y`` naming a missing file) writes the default file, says what to edit and exits 0
  (:func:`first_use`). ``webui.py`` reads the file when it is there but never writes it (run bare it still starts
  the demo voice).

The default file has upstream's sections and keys (``dataset_path``, ``mirror``, ``openi_token``, ``resample``,
``preprocess_text``, ``bert_gen``, ``emo_gen``, ``train_ms``, ``webui``, ``server``, ``translate``) with this
project's defaults; ``mirror``/``openi_token``/``train_ms.base`` (downloads), ``emo_gen`` (unused in v2.3),
``server`` and ``translate`` are kept for compatibility and not used here.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import yaml

from bert_vits2.fileio import atomic_write

DEFAULT_YML = "config.yml"

#: the default file (comments included); upstream's layout (spec §6), this project's default values
DEFAULT_YML_TEXT = """\
# Bert-VITS2 tools' settings (upstream config.yml layout). Command-line options override these values.
# Relative paths below are joined with dataset_path: put each dataset in its own folder, e.g. Data/myvoice/.

# dataset folder: audios/, filelists/, config.json and models/ live under it
dataset_path: "Data/"

# upstream's download settings (this project never downloads models at run time; kept for compatibility)
mirror: ""
openi_token: ""

# resample.py: any audio -> 44.1 kHz mono 16-bit wav, sub-folders kept
resample:
  sampling_rate: 44100
  in_dir: "audios/raw"
  out_dir: "audios/wavs"

# preprocess_text.py: transcription list (wav|speaker|LANG|text) -> cleaned list, train/val lists, spk2id in config
preprocess_text:
  transcription_path: "filelists/esd.list"
  # empty: <transcription_path>.cleaned
  cleaned_path: ""
  train_path: "filelists/train.list"
  val_path: "filelists/val.list"
  config_path: "config.json"
  val_per_lang: 4
  max_val_total: 12
  # false: reuse an existing cleaned list
  clean: true

# bert_gen.py: BERT features x.bert.pt beside every x.wav of the train/val lists
bert_gen:
  config_path: "config.json"
  # each process holds its own BERT (~1.3 GB)
  num_processes: 2
  # cuda, cuda:1 or cpu; empty: cuda when available, else cpu
  device: ""
  # upstream's multi-GPU option; not used here (run several bert_gen.py with --lists instead)
  use_multi_device: false

# unused by Bert-VITS2 v2.3 (kept for files written by upstream)
emo_gen:
  config_path: "config.json"
  num_processes: 2
  device: "cuda"
  use_multi_device: false

# train_ms.py
train_ms:
  # distributed defaults, used only where the environment does not set them (torchrun does)
  env:
    MASTER_ADDR: "localhost"
    MASTER_PORT: 10086
    WORLD_SIZE: 1
    LOCAL_RANK: 0
    RANK: 0
  # fine-tuning base: this project never downloads it; put G_0/D_0/DUR_0/WD_0.pth into <model> or use --base-model
  base:
    use_base_model: false
    repo_id: ""
    model_image: ""
  # checkpoints and logs go here (relative to dataset_path)
  model: "models"
  config_path: "config.json"
  num_workers: 4
  spec_cache: true
  keep_ckpts: 8

# webui.py
webui:
  # cpu or cuda
  device: "cpu"
  # a G_*.pth file, or a folder (the newest G_*.pth in it)
  model: "models"
  config_path: "config.json"
  port: 7860
  share: false
  debug: false
  language_identification_library: "langid"

# upstream's HTTP server (server_fastapi.py); not part of this project, kept for compatibility
server:
  port: 5000
  device: "cuda"
  models:
    - model: ""
      config: ""
      device: "cuda"
      language: "ZH"
      speakers:
        - speaker: ""
          sdp_ratio: 0.5
          noise_scale: 0.6
          noise_scale_w: 0.9
          length_scale: 1.0

# upstream's translation keys; unused here
translate:
  app_key: ""
  secret_key: ""
"""

#: per tool: yml key -> (argparse dest, kind); kind "path" is joined with dataset_path, "path_or_empty" too unless
#: empty (then None), "value" is taken as is, "nonempty" too unless empty (then the tool's default stays), "not"
#: stores the negation (spec_cache -> no_spec_cache)
SECTIONS: dict[str, dict[str, tuple[str, str]]] = {
    "resample": {"sampling_rate": ("sr", "value"), "in_dir": ("in_dir", "path"), "out_dir": ("out_dir", "path")},
    "preprocess_text": {
        "transcription_path": ("transcription_path", "path"), "cleaned_path": ("cleaned_path", "path_or_empty"),
        "train_path": ("train_path", "path"), "val_path": ("val_path", "path"), "config_path": ("config_path", "path"),
        "val_per_lang": ("val_per_lang", "value"), "max_val_total": ("max_val_total", "value"),
        "clean": ("clean", "value"),
    },
    "bert_gen": {"config_path": ("config", "path"), "num_processes": ("processes", "value"),
                 "device": ("device", "nonempty")},
    "train_ms": {"model": ("model_dir", "path"), "config_path": ("config", "path"),
                 "num_workers": ("num_workers", "value"), "spec_cache": ("no_spec_cache", "not"),
                 "keep_ckpts": ("keep_ckpts", "value")},
    "webui": {"model": ("yml_model", "path"), "config_path": ("config", "path"), "device": ("device", "nonempty"),
              "port": ("port", "value"), "share": ("share", "value"), "debug": ("verbose", "value")},
}


class YmlError(ValueError):
    """An unreadable or malformed config.yml; the message names the file and what is wrong."""


def add_yml_argument(parser: argparse.ArgumentParser) -> None:
    """``-y/--yml_config`` (upstream's option)."""
    parser.add_argument("-y", "--yml_config", "--yml-config", dest="yml_config", default=None,
                        help=f"upstream-style settings file (default: ./{DEFAULT_YML} when it exists; options given "
                             "here override it). Run with no arguments and no config.yml to write the default file")


def write_default_yml(path: str | os.PathLike = DEFAULT_YML) -> Path:
    """Write the default config.yml to ``path`` (never over an existing file); returns the path."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists already; not overwriting it")
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(DEFAULT_YML_TEXT)
    return path


def load_yml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a config.yml into a dict (``YmlError`` naming the file if it is not a YAML mapping)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise YmlError(f"{path}: cannot read it as YAML ({err})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise YmlError(f"{path}: expected a mapping of sections (dataset_path:, resample:, ...), got {type(data).__name__}")
    for name in SECTIONS:
        if data.get(name) is not None and not isinstance(data[name], dict):
            raise YmlError(f"{path}: section {name!r} must be a mapping of keys, got {type(data[name]).__name__}")
    return data


def section_values(data: dict[str, Any], section: str) -> dict[str, Any]:
    """``{argparse dest: value}`` of one tool's section; relative paths joined with ``dataset_path``."""
    root = str(data.get("dataset_path") or "")
    values: dict[str, Any] = {}
    for key, (dest, kind) in SECTIONS[section].items():
        sec = data.get(section) or {}
        if key not in sec or sec[key] is None:
            continue
        value = sec[key]
        if kind in ("path", "path_or_empty"):
            if kind == "path_or_empty" and str(value) == "":
                values[dest] = None
                continue
            value = os.path.join(root, str(value)) if root else str(value)
        elif kind == "not":
            value = not bool(value)
        elif kind == "nonempty" and str(value) == "":
            continue
        values[dest] = value
    return values


def given_dests(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> set[str]:
    """The argparse ``dest`` names the command line actually set (so config.yml never overrides them)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    saved = [(action, action.default) for action in parser._actions]  # noqa: SLF001 - argparse has no public API
    try:
        for action, _default in saved:
            action.default = argparse.SUPPRESS
        ns, _rest = parser.parse_known_args(argv)
    finally:
        for action, default in saved:
            action.default = default
    return set(vars(ns))


def first_use(yml_path: str | None, argv: Sequence[str] | None, tool: str) -> bool:
    """Upstream's first run: no arguments (or ``-y FILE``) and the file missing -> write the default file, print
    what to do and return True (the tool then exits 0). Otherwise False."""
    args = list(sys.argv[1:] if argv is None else argv)
    only_yml = all(a in ("-y", "--yml_config", "--yml-config") or a == yml_path
                   or a.startswith(("--yml_config=", "--yml-config=")) for a in args)
    path = Path(yml_path or DEFAULT_YML)
    if not only_yml or path.exists():
        return False
    write_default_yml(path)
    print(f"{tool}: wrote the default settings file {path}. Set dataset_path (e.g. Data/myvoice/) and the "
          f"{tool.removesuffix('.py')} section in it, then run {tool} again. Command-line options (see --help) "
          "override it.")
    return True


def apply_yml(
    parser: argparse.ArgumentParser, args: argparse.Namespace, argv: Sequence[str] | None, section: str,
) -> dict[str, Any] | None:
    """Fill ``args`` from ``section`` of the config.yml (``args.yml_config`` or ./config.yml when it exists), except
    the options given on the command line. Returns the whole yml (None when no file is used)."""
    explicit = getattr(args, "yml_config", None)
    path = Path(explicit or DEFAULT_YML)
    if not path.is_file():
        if explicit:
            raise YmlError(f"{path}: no such settings file (run without arguments to write the default one)")
        return None
    data = load_yml(path)
    given = given_dests(parser, argv)
    for dest, value in section_values(data, section).items():
        if dest not in given:
            setattr(args, dest, value)
    return data


def apply_webui_model(args: argparse.Namespace) -> None:
    """``webui.model`` of config.yml (``args.yml_model``): a ``G_*.pth`` -> ``--checkpoint`` (its folder as the model
    folder), a folder -> ``--model-dir``; ignored when ``-m``/``--checkpoint`` were given."""
    model = getattr(args, "yml_model", None)
    if not model or getattr(args, "model_dir", None) or getattr(args, "checkpoint", None):
        return
    if str(model).endswith(".pth"):
        args.checkpoint, args.model_dir = str(model), os.path.dirname(str(model)) or "."
    else:
        args.model_dir = str(model)


def apply_env(data: dict[str, Any] | None) -> None:
    """``train_ms.env``: distributed variables set only where the environment lacks them (upstream's behaviour)."""
    env = ((data or {}).get("train_ms") or {}).get("env") or {}
    if not isinstance(env, dict):
        return
    for key, value in env.items():
        os.environ.setdefault(str(key), str(value))


__all__ = [
    "DEFAULT_YML", "DEFAULT_YML_TEXT", "SECTIONS", "YmlError", "add_yml_argument", "apply_env", "apply_webui_model",
    "apply_yml",
    "first_use", "given_dests", "load_yml", "section_values", "write_default_yml",
]
