"""Numbers quoted in the coursework's and the book's prose, tied to the code they quote.

Where prose states a setting or a shipped result, this test reads the number out of the
text and compares it with the value in the package, so that changing one without the
other fails here.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from overfeat_scratch.common.fileio import SHIPPED_DIR
from overfeat_scratch.detect.settings import MergeSettings
from overfeat_scratch.nn.train import MINI_CONFIG

ROOT = Path(__file__).resolve().parent.parent


def notebook_text(name: str) -> str:
    nb = json.loads((ROOT / "notebooks" / name).read_text())
    return "\n".join("".join(cell["source"]) for cell in nb["cells"])


def number_in(text: str, pattern: str) -> float:
    match = re.search(pattern, text, re.S)
    assert match, f"the text no longer says: {pattern}"
    return float(match.group(1))


def test_the_training_notebook_quotes_the_batch_its_steps_and_the_shipped_error():
    text = notebook_text("04_training.ipynb")
    steps = number_in(text, r"(\d+) steps each at `MINI_CONFIG`'s batch of \d+")
    batch = number_in(text, r"steps each at `MINI_CONFIG`'s batch of (\d+)")
    digits = int(
        re.search(r"three epochs over the ([\d,]+) digits", text).group(1).replace(",", "")
    )
    assert batch == MINI_CONFIG.batch_size
    assert steps == math.ceil(digits / MINI_CONFIG.batch_size)
    shipped = json.loads((SHIPPED_DIR / "mini.json").read_text())["test_error"]
    assert number_in(text, r"shipped network's ([\d.]+)%") == round(100 * shipped, 2)


def test_the_localization_notebook_and_chapter_quote_the_merge_thresholds():
    text = notebook_text("05_localization.ipynb")
    assert number_in(text, r"localizer uses\s+\$t = ([\d.]+)\$") == MergeSettings().threshold
    chapter = (ROOT / "docs" / "localization.md").read_text()
    assert number_in(chapter, r"MergeSettings\(\)  # t = ([\d.]+),") == MergeSettings().threshold
