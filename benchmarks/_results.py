"""Shared by the benchmark scripts: write one topic's section of RESULTS.md between markers."""

from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def write_section(topic: str, title: str, body: str) -> None:
    """Replace (or append) the block between ``<!-- topic start -->`` and ``<!-- topic end -->``."""
    start, end = f"<!-- {topic} start -->", f"<!-- {topic} end -->"
    block = f"{start}\n## {title}\n\n{body}\n{end}"
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if start in text and end in text:
        a, b = text.index(start), text.index(end) + len(end)
        text = text[:a] + block + text[b:]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    RESULTS.write_text(text)
