"""report.md: the report's sections (reports/sections.py) as GitHub-flavoured Markdown."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from reports.sections import Section


def markdown_table(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of ``table`` (cells as ``str``)."""
    if table.empty:
        return "_(none)_\n"

    def cell(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(cell(c) for c in table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def _section(section: Section) -> str:
    parts = [f"\n{'#' * section.level} {section.title}\n"]
    if section.note:
        parts.append(f"\n{section.note}\n")
    parts += [f"\n{markdown_table(table)}" for table in section.tables]
    parts += [f"\n> **Warning:** {line}\n" for line in section.warnings]
    parts += [f"\n![{figure.name}]({figure.path})\n" for figure in section.figures]
    parts += [
        f"\n![{video.caption}]({video.gif_path})\n\n[mp4]({video.mp4_path})\n"
        for video in section.videos
    ]
    return "".join(parts)


def render_markdown(sections: Sequence[Section]) -> str:
    """The Markdown report; figures and videos are linked by their paths in the report folder."""
    return "".join(_section(section) for section in sections).lstrip("\n")
