"""Test helpers for the synthesis API and the web UI: a tiny random Bert-VITS2 v2.3 voice folder.

The folder looks like a user's: ``G_<step>.pth`` (written by ``save_checkpoint``), ``config.json`` and
``bert/<upstream folder name>/`` for ZH and EN. The BERTs are random 2-layer models with hidden size 1024 (the width
the generator's BERT projections take) and the tokenizers of the tiny fixtures in ../shared/reference/bv2.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import torch

SPEAKERS = {"alice": 0, "bob": 1}


def _tiny_bert_zh(src: Path, dst: Path) -> None:
    import transformers

    dst.mkdir(parents=True, exist_ok=True)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(src / name, dst / name)
    cfg = json.loads((src / "config.json").read_text())
    conf = transformers.BertConfig(
        vocab_size=cfg["vocab_size"], hidden_size=1024, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=cfg["max_position_embeddings"],
    )
    torch.manual_seed(0)
    transformers.BertForMaskedLM(conf).save_pretrained(str(dst))


def _tiny_bert_en(src: Path, dst: Path) -> None:
    import transformers

    dst.mkdir(parents=True, exist_ok=True)
    for name in ("spm.model", "tokenizer.json", "tokenizer_config.json"):
        if (src / name).is_file():
            shutil.copy(src / name, dst / name)
    cfg = json.loads((src / "config.json").read_text())
    cfg.update(hidden_size=1024, num_hidden_layers=2, intermediate_size=64, pooler_hidden_size=1024)
    for key in ("architectures", "transformers_version", "dtype"):
        cfg.pop(key, None)
    conf = transformers.DebertaV2Config(**cfg)
    torch.manual_seed(0)
    transformers.DebertaV2Model(conf).save_pretrained(str(dst))


def make_tiny_voice(bv2_ref: Path, folder: Path) -> Path:
    """Write a tiny random voice into ``folder`` (returns it)."""
    from bert_vits2.checkpoint import save_checkpoint
    from bert_vits2.hparams import HParams
    from bert_vits2.models import SynthesizerTrn
    from bert_vits2.text.bert import BERT_MODELS

    folder.mkdir(parents=True, exist_ok=True)
    cfg = json.loads((bv2_ref / "config.json").read_text())
    cfg["data"]["spk2id"] = dict(SPEAKERS)
    cfg["data"]["n_speakers"] = len(SPEAKERS)
    (folder / "config.json").write_text(json.dumps(cfg, indent=1))
    hps = HParams(cfg)
    torch.manual_seed(0)
    model = SynthesizerTrn(112, hps.data.filter_length // 2 + 1, hps.train.segment_size // hps.data.hop_length,
                           n_speakers=len(SPEAKERS), **hps.model)
    with torch.no_grad():  # speech-like durations (~5 z frames per phone) instead of the zero-init 1 frame
        model.dp.proj.bias.fill_(math.log(5.0))
    save_checkpoint(model, None, None, 10, folder / "G_10.pth")
    save_checkpoint(model, None, None, 5, folder / "G_5.pth")  # older one: must not be picked
    _tiny_bert_zh(bv2_ref / "bert_tiny_zh", folder / "bert" / BERT_MODELS["ZH"].folder_name)
    _tiny_bert_en(bv2_ref / "tokenizer_en_spm", folder / "bert" / BERT_MODELS["EN"].folder_name)
    return folder
