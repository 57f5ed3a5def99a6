"""docs/guide/12-python.md's examples, run: every ```pycon block in order, in one fresh
directory, as a reader would type them; the output must be what the chapter shows (`...`
stands for any text)."""

import doctest
import os
import re

from conftest import ROOT

CHAPTER = ROOT / "docs" / "guide" / "12-python.md"


def test_the_python_chapter_shows_what_it_runs(tmp_path, monkeypatch):
    text = CHAPTER.read_text()
    blocks = re.findall(r"```pycon\n(.*?)```", text, flags=re.S)
    assert blocks, "the chapter has no examples"
    monkeypatch.chdir(tmp_path)
    parser = doctest.DocTestParser()
    test = parser.get_doctest("\n".join(blocks), {}, CHAPTER.name, str(CHAPTER), 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    failures = []
    runner.run(test, out=failures.append)
    assert runner.failures == 0, "".join(failures)
    assert os.path.exists(tmp_path / "py-run" / "latest.json")
