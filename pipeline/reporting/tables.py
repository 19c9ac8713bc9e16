"""Tables written twice, as Markdown (``index.md``) and as self-contained HTML pages (the Snakemake
report's items): one :class:`Table` value, two renderings, so that both say the same."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

NUMBER = re.compile(r"^[+\-−]?\d[\d,]*(\.\d+)?( ?%| s| MB)?$")

STYLE = """
body { font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; font-size: 14px; color: #1f2328;
       margin: 16px 24px; max-width: 1200px; background: #ffffff; }
h1 { font-size: 20px; margin: 4px 0 12px; }
h2 { font-size: 16px; margin: 20px 0 8px; }
p.note { color: #57606a; margin: 4px 0 10px; }
table { border-collapse: collapse; margin: 6px 0 16px; }
th, td { border: 1px solid #d0d7de; padding: 4px 9px; }
th { background: #f0f3f6; text-align: left; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr:nth-child(even) td { background: #f8f9fb; }
pre { background: #f6f8fa; border: 1px solid #d0d7de; padding: 10px; font-size: 12px; overflow-x: auto; }
"""


@dataclass
class Table:
    """A header and rows of cell texts (numbers already formatted)."""

    header: list[str]
    rows: list[list[str]] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        if len(cells) != len(self.header):
            raise ValueError(f"a row of {len(cells)} cells in a table of {len(self.header)} columns")
        self.rows.append([str(c) for c in cells])

    def markdown(self) -> str:
        lines = ["| " + " | ".join(self.header) + " |", "|" + " --- |" * len(self.header)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in self.rows]
        return "\n".join(lines)

    def html(self) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.header)
        body = "\n".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in self.rows)
        return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def _cell(text: str) -> str:
    kind = ' class="num"' if NUMBER.match(text) else ""
    return f"<td{kind}>{html.escape(text)}</td>"


def heading(text: str, level: int = 2) -> str:
    return f"<h{level}>{html.escape(text)}</h{level}>"


def note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def preformatted(text: str) -> str:
    return f"<pre>{html.escape(text)}</pre>"


def html_page(title: str, blocks: list[str]) -> str:
    """A whole HTML document (no outside resources) with ``title`` as its heading and ``blocks`` below."""
    body = "\n".join(blocks)
    return (f'<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
            f"<style>{STYLE}</style>\n</head>\n<body>\n{heading(title, 1)}\n{body}\n</body>\n</html>\n")
