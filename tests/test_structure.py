"""Code that others can live in (issue 21): the server and the synthesis core stay in small functions, and the server
waits on events and queues, never in polling loops. (Complexity is ruff's C901, see pyproject.toml.)"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMALL = sorted((ROOT / "motion" / "server").glob("*.py")) + [
    ROOT / "bert_vits2" / name for name in ("synthesis.py", "streaming.py", "request.py", "results.py")]
MAX_LINES = 60


def _functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def test_functions_are_short():
    long = [f"{p.relative_to(ROOT)}:{f.lineno} {f.name} ({f.end_lineno - f.lineno + 1} lines)"
            for p in SMALL for f in _functions(p) if f.end_lineno - f.lineno + 1 > MAX_LINES]
    assert not long, "functions over 60 lines: " + "; ".join(long)


def test_server_does_not_poll():
    """No sleeps and no short-timeout waits in the server: a queue, an event or an await serves."""
    found = []
    for path in sorted((ROOT / "motion" / "server").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "sleep":
                found.append(f"{path.name}:{node.lineno} sleep")
            for kw in getattr(node, "keywords", []) if isinstance(node, ast.Call) else []:
                if kw.arg == "timeout" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, float) \
                        and kw.value.value < 1:
                    found.append(f"{path.name}:{node.lineno} timeout={kw.value.value}")
    assert not found, "polling in the server: " + ", ".join(found)


def test_checks_can_fail(tmp_path):
    """The two checks above find what they look for."""
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n" + "    x = 1\n" * 70 + "\nimport time\ntime.sleep(0.05)\nq.get(timeout=0.05)\n")
    assert [f.name for f in _functions(probe) if f.end_lineno - f.lineno + 1 > MAX_LINES] == ["f"]
    calls = [n for n in ast.walk(ast.parse(probe.read_text())) if isinstance(n, ast.Call)]
    assert any(isinstance(c.func, ast.Attribute) and c.func.attr == "sleep" for c in calls)


def test_readme_architecture_names_every_module():
    """The README's Architecture section is a newcomer's map: every module of both packages is named in it."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Architecture"):text.index("\n## ", text.index("## Architecture") + 5)]
    section = re.sub(r"```.*?```", "", section, flags=re.S)  # the diagrams
    named = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", " ".join(re.findall(r"`([^`]+)`", section))))
    missing = []
    for pkg in ("bert_vits2", "motion"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            if path.name == "__init__.py" or "__pycache__" in path.parts:
                continue
            if path.stem not in named:  # named in code spans (`face/api`, `checkpoint_files`, ...)
                missing.append(str(path.relative_to(ROOT)))
    assert not missing, "modules the README's Architecture section does not name: " + ", ".join(missing)
