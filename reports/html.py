"""report.html: one self-contained file (images and videos as data URIs, no external URL)."""

from __future__ import annotations

import base64
import html
import re

import pandas as pd

from reports.differences import difference_table, lead_sections
from reports.grid import Grid
from reports.load import Run
from reports.markdown import manifest_table
from reports.tables import metric_table, quality_table, speed_table, timing_warnings

CI_CELL = re.compile(r"^(\S+) (\[[^\]]+\])$")
# Videos above this size stay as files next to the report; the GIF preview is always inline.
MAX_INLINE_VIDEO_BYTES = 8 * 2**20

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; max-width: 1250px; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: left; }
td { white-space: nowrap; }
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
    text = html.escape(str(value))
    match = CI_CELL.match(text)
    # A CI under its mean keeps wide tables within the page.
    return f"{match[1]}<br><span class='ci'>{match[2]}</span>" if match else text


def html_table(table: pd.DataFrame) -> str:
    """An escaped HTML table of ``table``; ``mean [low, high]`` cells show the CI below."""
    if table.empty:
        return "<p class='note'>(none)</p>"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>"
        for row in table.itertuples(index=False)
    )
    return (
        f"<div class='scroll'><table><thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table></div>"
    )


def _grid_html(grid: Grid) -> str:
    title = f"{grid.case}, seed {grid.seed}"
    parts = [
        f"<h3>{html.escape(title)}</h3>",
        f"<p class='note'>{html.escape(' | '.join(grid.columns))}</p>",
        f"<img class='grid' id='grid-{html.escape(grid.case)}-seed{grid.seed}' "
        f"alt='{html.escape(title)}' src='{data_uri(grid.gif, 'image/gif')}'>",
    ]
    video = grid.mp4.read_bytes()
    if len(video) <= MAX_INLINE_VIDEO_BYTES:
        parts.append(
            "<details><summary>full-resolution mp4</summary>"
            f"<video controls loop muted src='{data_uri(video, 'video/mp4')}'></video></details>"
        )
    else:
        parts.append(f"<p class='note'>mp4 too large to inline: grids/{grid.mp4.name}</p>")
    return "\n".join(parts)


def render_html(
    run: Run,
    summary: pd.DataFrame,
    figures: dict[str, tuple[str, bytes]],
    grids: list[Grid],
    differences: pd.DataFrame | None = None,
) -> str:
    """The self-contained HTML report; ``figures`` map name -> (title, PNG bytes)."""
    title = f"FlashBench report: {run.suite} ({run.name})"
    differences = difference_table(run) if differences is None else differences
    body = [f"<h1>{html.escape(title)}</h1>", html_table(manifest_table(run).astype(str))]
    for heading, note, table in lead_sections(run, differences):
        body += [
            f"<h2>{html.escape(heading)}</h2><p class='note'>{html.escape(note)}</p>",
            html_table(table),
        ]
    body += [
        f"<h2>Comparison: suite <code>{html.escape(run.suite)}</code></h2>",
        "<p class='note'>Means with bootstrap 95% CIs over cases x seeds; speedups are "
        f"baseline / setting (baseline <code>{html.escape(run.baseline)}</code>). "
        "↑ higher is better, ↓ lower is better.</p>",
        "<h3>Speed</h3>",
        html_table(speed_table(summary, run.baseline)),
        *(
            f"<p class='warning'><b>Warning:</b> {html.escape(line)}</p>"
            for line in timing_warnings(run, summary)
        ),
        "<h3>Quality</h3>",
        html_table(quality_table(summary, run.baseline)),
        "<h2>Metrics and backends</h2>",
        html_table(metric_table(summary)),
    ]
    if not run.errors.empty:
        body += ["<h2>Failed units</h2>", html_table(run.errors)]
    body.append("<h2>Figures</h2>")
    for name, (caption, png) in figures.items():
        body.append(
            f"<h3>{html.escape(caption)}</h3><img class='figure' id='fig-{name}' "
            f"alt='{html.escape(caption)}' src='{data_uri(png, 'image/png')}'>"
        )
    if grids:
        body.append("<h2>Videos: reference | ground truth | one column per setting</h2>")
        body += [_grid_html(grid) for grid in grids]
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
