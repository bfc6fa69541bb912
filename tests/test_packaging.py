"""`pip install .` (a real wheel) holds every file the tools read at run time; `python -m bert_vits2` / `python -m
motion` list and run the tools; every CLI answers `--version` and names itself as invoked."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import REPO_ROOT, checkout_env

from bert_vits2.__main__ import TOOLS as TTS_TOOLS
from bert_vits2.__main__ import version
from motion.__main__ import TOOLS as MOTION_TOOLS

SCRIPTS = {  # every user-facing CLI: module -> the file name its usage shows when run as a file
    **{m: f"{m.split('.')[-1]}.py" for m, _ in [*TTS_TOOLS.values(), *MOTION_TOOLS.values()]},
    "scripts.train_default_head": "train_default_head.py",
}


def _tracked(*folders: str) -> list[str]:
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", *folders], cwd=REPO_ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip(f"not a git checkout ({out.stderr.strip()})")
    return [line for line in out.stdout.splitlines() if (REPO_ROOT / line).is_file()]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the tracked sources (the build never writes into the repository)."""
    src = tmp_path_factory.mktemp("src")
    for rel in _tracked("pyproject.toml", "README.md", "LICENSE", "NOTICE", "*.py", "bert_vits2", "motion", "configs"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / rel, src / rel)
    out = tmp_path_factory.mktemp("wheel")
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                          str(src)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert time.perf_counter() - t0 < 20.0
    (whl,) = out.glob("bert_vits2_face-*.whl")
    return whl


def test_wheel_holds_every_runtime_file(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for rel in ("configs/config.json", "motion/face/assets/default_mel_head.pth", "bert_vits2/text/cmudict.rep.gz",
                "bert_vits2/__main__.py", "motion/__main__.py"):
        assert rel in names, rel
    # every tracked file of the packages and configs/ except documentation, and every tool module
    wanted = [r for r in _tracked("bert_vits2", "motion", "configs") if not r.endswith(".md")]
    assert sorted(set(wanted) - names) == []
    for module, _ in [*TTS_TOOLS.values(), *MOTION_TOOLS.values()]:
        assert module.replace(".", "/") + ".py" in names, module
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    assert f"Version: {version()}" in zipfile.ZipFile(wheel).read(meta).decode()


def test_installed_wheel_finds_its_files(wheel, tmp_path):
    """Unpacked as pip installs it (outside the checkout), the dataset UI's template config and the default head are
    found, and `python -m motion` works."""
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = ("import bert_vits2, motion.face.model as m; from bert_vits2.preprocess_ui import PreprocessSteps; "
            "t = PreprocessSteps().template_config; print(bert_vits2.__file__); print(t.resolve()); "
            "print(t.is_file(), (m.ASSETS / 'default_mel_head.pth').is_file())")
    env = dict(checkout_env(), PYTHONPATH=str(site))
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr[-2000:]
    where, template, found = res.stdout.splitlines()[-3:]
    assert where.startswith(str(site)) and template == str(site / "configs" / "config.json") and found == "True True"
    res = subprocess.run([sys.executable, "-m", "motion"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0 and "wav_to_visemes" in res.stdout and "tts2ue" in res.stdout


@pytest.mark.parametrize("package, tools", [("bert_vits2", TTS_TOOLS), ("motion", MOTION_TOOLS)])
def test_python_m_lists_the_tools(package, tools, capsys):
    menu = importlib.import_module(f"{package}.__main__")
    assert menu.main([]) == 0
    out = capsys.readouterr().out
    assert f"usage: python -m {package} TOOL" in out and all(f"  {name} " in out for name in tools)
    assert menu.main(["--version"]) == 0 and capsys.readouterr().out.strip() == f"{package} {version()}"
    assert menu.main(["no-such-tool"]) == 2
    err = capsys.readouterr().err
    assert "unknown tool 'no-such-tool'" in err and "\n" == err[-1] and err.count("\n") == 1


def test_menu_names_a_missing_tool_or_dependency(tmp_path, monkeypatch, capsys):
    from bert_vits2.__main__ import run_menu

    (tmp_path / "tool_needing_x.py").write_text("import package_that_is_not_there\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    tools = {"gone": ("module_that_is_not_there", "x"), "needy": ("tool_needing_x", "y")}
    assert run_menu("motion", tools, {}, ["gone"]) == 2
    assert "the tool gone (module_that_is_not_there.py) is not installed here" in capsys.readouterr().err
    assert run_menu("motion", tools, {}, ["needy", "--help"]) == 2
    assert "needs the Python package 'package_that_is_not_there'" in capsys.readouterr().err


@pytest.mark.parametrize("module, file_name", sorted(SCRIPTS.items()))
def test_every_cli_has_version_and_names_itself(module, file_name, monkeypatch, capsys):
    mod = importlib.import_module(module)
    with pytest.raises(SystemExit) as exit_:
        mod.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"{file_name} {version()}"  # argv[0] is pytest: the file's name
    monkeypatch.setattr(sys, "argv", ["/home/u/.venv/bin/bv2-tool"])
    with pytest.raises(SystemExit):
        mod.main(["--help"])
    assert capsys.readouterr().out.startswith("usage: bv2-tool ")


@pytest.mark.slow
def test_python_m_motion_runs_a_tool(tmp_path):
    wav = tmp_path / "x.wav"
    t = np.arange(22050) / 22050.0
    sf.write(wav, (0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32), 22050)
    res = subprocess.run([sys.executable, "-m", "motion", "wav_to_visemes", str(wav)], cwd=tmp_path,
                         env=checkout_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert np.load(tmp_path / "x.v.npy").shape[1] == 61 and (tmp_path / "x.v.json").is_file()
    res = subprocess.run([sys.executable, "-m", "motion", "wav-to-visemes", "--bogus"], cwd=tmp_path,
                         env=checkout_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and res.stderr.startswith("usage: python -m motion wav_to_visemes ")
