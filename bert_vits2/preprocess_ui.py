"""The dataset-preparation web UI (upstream's ``webui_preprocess.py``): one page that walks a new user through
config -> resample -> transcription list -> preprocess_text -> bert_gen -> the training command.

Every button calls the same library functions as the command-line tools (:mod:`bert_vits2.preprocess`), with their
tqdm progress shown as progress bars in the page and their reports (files written, bad lines with line numbers and
reasons) shown under the button. :class:`PreprocessSteps` holds the steps as plain methods returning Markdown, so
they can be called and tested without a browser; :func:`build_app` lays them out with gradio (imported only there).
Served on 127.0.0.1 by default.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from bert_vits2.config_yml import DEFAULT_YML_TEXT
from bert_vits2.fileio import atomic_write
from bert_vits2.hparams import load_hparams
from bert_vits2.preprocess import bert_gen, preprocess_text, resample_folder

#: where a dataset's files go, relative to its folder (upstream's layout under Data/<name>/)
RAW_DIR, WAV_DIR = "audios/raw", "audios/wavs"
LIST_NAME = "filelists/esd.list"
TRAIN_LIST, VAL_LIST = "filelists/train.list", "filelists/val.list"
LANGUAGES = ("ZH", "JP", "EN")


def _fence(text: str) -> str:
    """Tool output as a Markdown code block (paths and bad-line reports shown verbatim)."""
    return "```\n" + text.replace("```", "'''") + "\n```"


def _error(err: BaseException | str) -> str:
    return f"**Error:** {err}"


class PreprocessSteps:
    """The page's steps. ``template_config`` is the config.json a new dataset starts from (this project's
    ``configs/config.json``); ``yml_path`` is the config.yml whose ``dataset_path`` step 1 sets."""

    def __init__(self, template_config: str | os.PathLike | None = None, yml_path: str | os.PathLike = "config.yml",
                 bert_root: str | os.PathLike | None = None) -> None:
        repo_config = Path(__file__).resolve().parent.parent / "configs" / "config.json"
        self.template_config = Path(template_config) if template_config else repo_config
        self.yml_path = Path(yml_path)
        self.bert_root = str(bert_root) if bert_root else ""

    @staticmethod
    def folder(dataset: str) -> Path:
        dataset = (dataset or "").strip()
        if not dataset:
            raise ValueError("type the dataset folder first (e.g. Data/myvoice)")
        return Path(dataset)

    # 1 ------------------------------------------------------------------------------------------------------------
    def create_config(self, dataset: str, batch_size: int = 16) -> str:
        """``<dataset>/config.json`` from the template (kept if it exists: only batch size and list paths change),
        the dataset's folders, and ``dataset_path`` in config.yml (the default file is written if missing)."""
        try:
            ds = self.folder(dataset)
            for sub in (RAW_DIR, WAV_DIR, "filelists", "models"):
                (ds / sub).mkdir(parents=True, exist_ok=True)
            cfg_path = ds / "config.json"
            existed = cfg_path.is_file()
            source = cfg_path if existed else self.template_config
            if not source.is_file():
                return _error(f"template config {source} not found")
            cfg = json.loads(source.read_text(encoding="utf-8"))
            cfg.setdefault("train", {})["batch_size"] = int(batch_size)
            cfg.setdefault("data", {}).update(training_files=str(ds / TRAIN_LIST), validation_files=str(ds / VAL_LIST))
            with atomic_write(cfg_path, "w", encoding="utf-8") as f:
                json.dump(cfg, f, ensure_ascii=False, indent=2)
            text = self.yml_path.read_text(encoding="utf-8") if self.yml_path.is_file() else DEFAULT_YML_TEXT
            line = f'dataset_path: "{ds.as_posix()}"'
            text, n = re.subn(r"(?m)^dataset_path:.*$", line, text)
            if not n:
                text = line + "\n" + text
            with atomic_write(self.yml_path, "w", encoding="utf-8") as f:
                f.write(text)
        except (OSError, ValueError) as err:
            return _error(err)
        return (f"{'Updated' if existed else 'Wrote'} `{cfg_path}` (batch size {int(batch_size)}) and set "
                f"`dataset_path` in `{self.yml_path}`.\n\nNext: put your recordings (any format, sub-folder = "
                f"speaker) into `{ds / RAW_DIR}` and resample them.")

    # 2 ------------------------------------------------------------------------------------------------------------
    def resample(self, dataset: str, sampling_rate: int = 44100, processes: int = 1) -> str:
        try:
            ds = self.folder(dataset)
            summary = resample_folder(ds / RAW_DIR, ds / WAV_DIR, int(sampling_rate), int(processes), False, True)
        except (OSError, ValueError, RuntimeError) as err:
            return _error(err)
        return _fence(summary.describe(f"resample {ds / RAW_DIR} -> {ds / WAV_DIR} at {int(sampling_rate)} Hz"))

    # 3 ------------------------------------------------------------------------------------------------------------
    def list_path(self, dataset: str) -> Path:
        return self.folder(dataset) / LIST_NAME

    def load_list(self, dataset: str) -> str:
        try:
            path = self.list_path(dataset)
        except ValueError:
            return ""
        return path.read_text(encoding="utf-8-sig") if path.is_file() else ""

    def make_template(self, dataset: str, language: str = "ZH") -> str:
        """``wav|speaker|LANG|text`` for every resampled wav (speaker = its sub-folder); texts already in the list
        are kept, the others are left empty for the user to type."""
        try:
            ds = self.folder(dataset)
        except ValueError:
            return ""
        known: dict[str, str] = {}
        for raw in self.load_list(dataset).splitlines():
            parts = raw.split("|")
            if len(parts) == 4:
                known[parts[0]] = raw
        lines = []
        root = ds / WAV_DIR
        for wav in sorted(root.rglob("*.wav")) if root.is_dir() else []:
            key = str(wav)
            speaker = wav.parent.name if wav.parent != root else ds.name
            lines.append(known.get(key, f"{key}|{speaker}|{language}|"))
        return "\n".join(lines) + ("\n" if lines else "")

    def save_list(self, dataset: str, text: str) -> str:
        try:
            path = self.list_path(dataset)
            path.parent.mkdir(parents=True, exist_ok=True)
            lines = [ln for ln in (text or "").splitlines() if ln.strip()]
            with atomic_write(path, "w", encoding="utf-8") as f:
                f.write("".join(ln + "\n" for ln in lines))
        except (OSError, ValueError) as err:
            return _error(err)
        empty = sum(1 for ln in lines if ln.split("|")[-1].strip() == "")
        note = f" ({empty} without text yet: preprocessing will report them)" if empty else ""
        return f"Saved {len(lines)} lines to `{path}`{note}."

    # 4 ------------------------------------------------------------------------------------------------------------
    def preprocess(self, dataset: str, val_per_lang: int = 4, max_val_total: int = 12, clean: bool = True,
                   allow_tokenizer_fallback: bool = False, bert_root: str = "") -> str:
        """JP/EN lines need their word tokenizer: the BERT folders under ``bert_root`` (default ``bert/``)."""
        if bert_root:
            self.bert_root = bert_root.strip()
        try:
            ds = self.folder(dataset)
            tok = self._bert_dirs() if self.bert_root else None
            summary = preprocess_text(ds / LIST_NAME, None, ds / TRAIN_LIST, ds / VAL_LIST, ds / "config.json",
                                      int(val_per_lang), int(max_val_total), bool(clean), tok, progress=True,
                                      allow_tokenizer_fallback=bool(allow_tokenizer_fallback))
        except (OSError, ValueError, RuntimeError) as err:
            return _error(_fence(str(err)))
        return _fence(summary.describe() + f"\nwrote {ds / TRAIN_LIST}, {ds / VAL_LIST} and updated {ds / 'config.json'}")

    # 5 ------------------------------------------------------------------------------------------------------------
    def _bert_dirs(self) -> dict[str, str]:
        from bert_vits2.text.bert import BERT_MODELS  # text.bert imports torch (~2.5 s): the UI starts without it

        return {lang: str(Path(self.bert_root) / BERT_MODELS[lang].folder_name) for lang in LANGUAGES}

    def bert_gen(self, dataset: str, bert_root: str = "", device: str = "cpu", processes: int = 1) -> str:
        if bert_root:
            self.bert_root = bert_root.strip()
        try:
            ds = self.folder(dataset)
            hps = load_hparams(ds / "config.json")
            dirs = self._bert_dirs() if self.bert_root else None
            summary = bert_gen([ds / TRAIN_LIST, ds / VAL_LIST], dirs, bool(hps.data.get("add_blank", True)),
                               device or "cpu", int(processes), False, True)
        except (OSError, ValueError, RuntimeError) as err:
            return _error(_fence(str(err)))
        return _fence(summary.describe("bert_gen"))

    # 6 ------------------------------------------------------------------------------------------------------------
    def train_command(self, dataset: str) -> str:
        try:
            ds = self.folder(dataset)
        except ValueError as err:
            return _error(err)
        return ("Train (checkpoints and TensorBoard logs go to "
                f"`{ds / 'models'}`):\n\n```\npython train_ms.py -m {ds} -c {ds / 'config.json'}\n```\n\n"
                f"or, with `dataset_path` set in `{self.yml_path}` by step 1, simply `python train_ms.py`. "
                "Put microsoft/wavlm-base-plus into `slm/wavlm-base-plus/` first (or add `--allow-missing-slm`).")


def build_app(steps: PreprocessSteps | None = None, dataset: str = "Data/mydata"):
    """The gradio Blocks (not launched). Progress bars follow the library's tqdm bars (``track_tqdm``)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr  # gradio: optional extra [webui], ~6 s import

    s = steps or PreprocessSteps()

    # gradio finds the progress tracker among the handler's positional parameters only (then it also tracks the
    # tools' tqdm bars), hence one small function per step
    def start(progress, name: str) -> None:
        progress(0, desc=f"{name}: starting")

    def create_config(dataset, batch_size, progress=gr.Progress(track_tqdm=True)):  # noqa: B008
        start(progress, "config")
        return s.create_config(dataset, batch_size)

    def resample(dataset, sampling_rate, processes, progress=gr.Progress(track_tqdm=True)):  # noqa: B008
        start(progress, "resample")
        return s.resample(dataset, sampling_rate, processes)

    def preprocess(dataset, val_per_lang, max_val_total, clean, fallback, bert_root,
                   progress=gr.Progress(track_tqdm=True)):  # noqa: B008
        start(progress, "preprocess_text")
        return s.preprocess(dataset, val_per_lang, max_val_total, clean, fallback, bert_root)

    def bert_gen(dataset, bert_root, device, processes, progress=gr.Progress(track_tqdm=True)):  # noqa: B008
        start(progress, "bert_gen")
        return s.bert_gen(dataset, bert_root, device, processes)

    with gr.Blocks(title="Bert-VITS2 dataset preparation") as app:
        gr.Markdown("# Bert-VITS2 dataset preparation\nConfig → resample → transcription list → preprocess_text → "
                    "bert_gen → training. Each step runs the same code as the command-line tool.")
        with gr.Row():
            ds = gr.Textbox(dataset, label="Dataset folder (e.g. Data/myvoice)", elem_id="pp-dataset")
            broot = gr.Textbox(s.bert_root, label="BERT root folder (holds chinese-roberta-wwm-ext-large/, "
                               "deberta-v2-large-japanese-char-wwm/, deberta-v3-large/; empty: bert/)",
                               elem_id="pp-bert-root")
        with gr.Group():
            gr.Markdown("## 1. Config")
            batch = gr.Number(16, label="batch size (per GPU)", precision=0, elem_id="pp-batch")
            b1 = gr.Button("Create config", elem_id="pp-config-go")
            o1 = gr.Markdown(elem_id="pp-config-out")
        with gr.Group():
            gr.Markdown(f"## 2. Resample\nAudio in `<dataset>/{RAW_DIR}` (sub-folder = speaker) → 16-bit mono wavs "
                        f"in `<dataset>/{WAV_DIR}`.")
            sr = gr.Number(44100, label="sampling rate", precision=0, elem_id="pp-sr")
            procs = gr.Number(1, label="processes", precision=0, elem_id="pp-resample-procs")
            b2 = gr.Button("Resample", elem_id="pp-resample-go")
            o2 = gr.Markdown(elem_id="pp-resample-out")
        with gr.Group():
            gr.Markdown(f"## 3. Transcription list\n`<dataset>/{LIST_NAME}`: one `wav|speaker|LANG|text` line per "
                        "recording (LANG = ZH, JP or EN).")
            lang = gr.Dropdown(list(LANGUAGES), value="ZH", label="language of new lines", elem_id="pp-lang")
            with gr.Row():
                b3t = gr.Button("Make lines for the wavs", elem_id="pp-template-go")
                b3l = gr.Button("Load", elem_id="pp-load-go")
                b3s = gr.Button("Save", elem_id="pp-save-go")
            lst = gr.Textbox(label="transcription list", lines=8, elem_id="pp-list")
            o3 = gr.Markdown(elem_id="pp-list-out")
        with gr.Group():
            gr.Markdown("## 4. preprocess_text\nText frontend → cleaned list, train/val lists, speakers into the "
                        "config. Bad lines are listed with their line numbers and left out.")
            vpl = gr.Number(4, label="val lines per language", precision=0, elem_id="pp-val-per-lang")
            mvt = gr.Number(12, label="max val lines", precision=0, elem_id="pp-max-val")
            clean = gr.Checkbox(True, label="run the text frontend (off: reuse the cleaned list)", elem_id="pp-clean")
            fallback = gr.Checkbox(False, label="allow the JP/EN word-tokenizer fallback", elem_id="pp-fallback")
            b4 = gr.Button("Preprocess text", elem_id="pp-text-go")
            o4 = gr.Markdown(elem_id="pp-text-out")
        with gr.Group():
            gr.Markdown("## 5. bert_gen\nBERT features beside every wav (`x.bert.pt`). Needs the BERT folder of "
                        "each language used.")
            dev = gr.Dropdown(["cpu", "cuda"], value="cpu", label="device", elem_id="pp-device")
            bprocs = gr.Number(1, label="processes", precision=0, elem_id="pp-bert-procs")
            b5 = gr.Button("Generate BERT features", elem_id="pp-bert-go")
            o5 = gr.Markdown(elem_id="pp-bert-out")
        with gr.Group():
            gr.Markdown("## 6. Train")
            b6 = gr.Button("Show the training command", elem_id="pp-train-go")
            o6 = gr.Markdown(elem_id="pp-train-out")

        b1.click(create_config, [ds, batch], o1)
        b2.click(resample, [ds, sr, procs], o2)
        b3t.click(s.make_template, [ds, lang], lst)
        b3l.click(s.load_list, [ds], lst)
        b3s.click(s.save_list, [ds, lst], o3)
        b4.click(preprocess, [ds, vpl, mvt, clean, fallback, broot], o4)
        b5.click(bert_gen, [ds, broot, dev, bprocs], o5)
        b6.click(s.train_command, [ds], o6)
    app.preprocess_steps = s
    return app


def launch(app, host: str = "127.0.0.1", port: int = 7861, share: bool = False, block: bool = True):
    """Serve ``app`` (local only unless ``host`` says otherwise; no share link unless asked)."""
    return app.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=not block, quiet=True,
                      show_error=True)


__all__ = ["PreprocessSteps", "build_app", "launch"]
