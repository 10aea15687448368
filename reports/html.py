"""report.html: the report's sections (reports/sections.py) in one self-contained file (images and videos as data URIs, no external URL)."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence

import pandas as pd

from reports.sections import Section, Video

CI_CELL = re.compile(r"^(\S+) (\[[^\]]+\])$")
CODE_SPAN = re.compile(r"`([^`]+)`")
# A Markdown link to a source (the regime section's footnotes): the HTML keeps its text only,
# since the report points nowhere outside itself; the footnote table names the source in full.
LINK = re.compile(r"\[([^\]]+)\]\(https?://[^)\s]+\)")
# Cells longer than this wrap (a source's full citation) instead of widening the table.
LONG_CELL = 80
# Videos above this size stay as files next to the report; the GIF preview is always inline.
MAX_INLINE_VIDEO_BYTES = 8 * 2**20

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; max-width: 1250px; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: left; }
td { white-space: nowrap; }
td.long { white-space: normal; min-width: 28em; }
div.scroll { overflow-x: auto; }
th { background: #f0f0f0; }
tr:nth-child(even) td { background: #fafafa; }
img.figure { max-width: 100%; border: 1px solid #ddd; }
img.grid { image-rendering: pixelated; max-width: 100%; }
.note { color: #555; font-size: 13px; }
.warning { color: #8a4b00; background: #fff4e0; padding: 6px; }
.ci { color: #666; font-size: 11px; }
"""


def data_uri(data: bytes, mime: str) -> str:
    """``data:`` URI of ``data``; the report never points outside itself."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _cell(value: object) -> str:
    text = html.escape(LINK.sub(r"[\1]", str(value)))
    match = CI_CELL.match(text)
    # A CI under its mean keeps wide tables within the page.
    return f"{match[1]}<br><span class='ci'>{match[2]}</span>" if match else text


def html_table(table: pd.DataFrame) -> str:
    """An escaped HTML table of ``table``; ``mean [low, high]`` cells show the CI below."""
    if table.empty:
        return "<p class='note'>(none)</p>"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td class='long'>{_cell(v)}</td>"
            if len(str(v)) > LONG_CELL
            else f"<td>{_cell(v)}</td>"
            for v in row
        )
        + "</tr>"
        for row in table.itertuples(index=False)
    )
    return (
        f"<div class='scroll'><table><thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table></div>"
    )


def _inline(text: str) -> str:
    """Escaped ``text`` with its backtick spans as ``<code>``."""
    return CODE_SPAN.sub(r"<code>\1</code>", html.escape(text))


def _video_html(video: Video) -> str:
    parts = [
        f"<img class='grid' id='grid-{html.escape(video.name)}' "
        f"alt='{html.escape(video.caption)}' src='{data_uri(video.gif, 'image/gif')}'>"
    ]
    data = video.mp4.read_bytes()
    if len(data) <= MAX_INLINE_VIDEO_BYTES:
        parts.append(
            "<details><summary>full-resolution mp4</summary>"
            f"<video controls loop muted src='{data_uri(data, 'video/mp4')}'></video></details>"
        )
    else:
        parts.append(f"<p class='note'>mp4 too large to inline: {html.escape(video.mp4_path)}</p>")
    return "\n".join(parts)


def _section_html(section: Section) -> str:
    parts = [f"<h{section.level}>{_inline(section.title)}</h{section.level}>"]
    if section.note:
        parts.append(f"<p class='note'>{_inline(section.note)}</p>")
    parts += [html_table(table) for table in section.tables]
    parts += [
        f"<p class='warning'><b>Warning:</b> {html.escape(line)}</p>" for line in section.warnings
    ]
    parts += [
        f"<img class='figure' id='fig-{html.escape(figure.name)}' "
        f"alt='{html.escape(figure.caption)}' src='{data_uri(figure.png, 'image/png')}'>"
        for figure in section.figures
    ]
    parts += [_video_html(video) for video in section.videos]
    return "\n".join(parts)


def render_html(sections: Sequence[Section]) -> str:
    """The self-contained HTML report; the first section's title is the page's."""
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(sections[0].title)}</title><style>{STYLE}</style></head><body>\n"
        + "\n".join(_section_html(section) for section in sections)
        + "\n</body></html>\n"
    )
