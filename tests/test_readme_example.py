"""The README's Python example runs as written (with the real bundled model)."""

from __future__ import annotations

import re

from tests.conftest import REPO


def test_the_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert blocks, "the README has a Python example"
    code = blocks[0]
    assert len(code.strip().splitlines()) <= 15
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    printed = capsys.readouterr().out.split()
    assert printed[0] == "photosynthesis" and printed[-1] == "volcano"  # the two searches' best hits
