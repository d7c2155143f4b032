"""The README's examples run and print exactly what the README says they print."""

import contextlib
import io
import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _examples():
    text = README.read_text()
    return re.findall(r"```python\n(.*?)```\s*\n\s*prints\s*\n\s*```\n(.*?)```", text, re.S)


def test_readme_has_examples():
    assert len(_examples()) >= 1


def test_readme_examples_print_what_they_say():
    for code, expected in _examples():
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, str(README), "exec"), {})
        assert out.getvalue().strip() == expected.strip()
