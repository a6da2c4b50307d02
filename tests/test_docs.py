"""Every ```python block of the READMEs and docs/*.md runs, as a script of its own."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    *sorted(ROOT.glob("adapters/*/README.md")),
]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def _examples() -> list[pytest.param]:
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in BLOCK.finditer(text):
            line = text.count("\n", 0, match.start()) + 2
            where = f"{page.relative_to(ROOT)}:{line}"
            found.append(pytest.param(match.group(1), where, id=where))
    return found


EXAMPLES = _examples()


def test_the_documentation_has_examples() -> None:
    assert len(EXAMPLES) >= 5, "README.md and docs/ lost their examples"


@pytest.mark.parametrize(("source", "where"), EXAMPLES)
def test_example_runs(source: str, where: str, tmp_path: Path) -> None:
    # a real file, so that code reading its own source (FastStream's TestBroker) finds it
    script = tmp_path / (where.replace("/", "_").replace(":", "_line") + ".py")
    script.write_text(source, encoding="utf-8")
    code = compile(source, str(script), "exec")
    exec(code, {"__name__": "__main__", "__file__": str(script)})
