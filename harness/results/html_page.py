"""The HTML report's page: escaping of record text, sortable tables and the page itself (its style, the plotly
charts it holds as divs, plotly's JavaScript inlined once and the table-sorting script), so the file needs nothing
outside itself."""
from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable
from typing import Any

import pandas as pd

__all__ = ["PALETTE", "Page", "cell_html", "escape", "html_table"]

#: The backends' colours, given out in the order of their names.
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f")
#: A number at the start of a cell's text (what a numeric sort reads).
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; } h3 { margin-top: 1.4em; }
p.note { color: #555; font-size: 0.9em; max-width: 70em; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; cursor: pointer; user-select: none; }
th[aria-sort="ascending"]::after { content: " \\25B2"; } th[aria-sort="descending"]::after { content: " \\25BC"; }
tbody tr:nth-child(even) { background: #fafafa; }
.plotly-graph-div { margin: 0.5em 0 1em; }
"""


#: Sorts a table by the clicked header's column (a cell's data-sort, else its text; numbers first, blanks last);
#: a second click reverses it.
_SORT_JS = """
document.querySelectorAll("table.sortable th").forEach(function (th) {
  th.addEventListener("click", function () {
    var table = th.closest("table"), body = table.tBodies[0], col = th.cellIndex;
    var asc = th.getAttribute("aria-sort") !== "ascending";
    table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", asc ? "ascending" : "descending");
    function key(row) {
      var cell = row.cells[col];
      if (!cell) { return ""; }
      var v = cell.getAttribute("data-sort");
      return v === null ? cell.textContent.trim() : parseFloat(v);
    }
    var rows = Array.prototype.slice.call(body.rows);
    function rank(v) { return typeof v === "number" ? 0 : v === "" ? 2 : 1; }
    rows.sort(function (a, b) {
      var x = key(a), y = key(b);
      if (rank(x) !== rank(y)) { return rank(x) - rank(y); }  // numbers, then text, then blanks, either way
      var d = rank(x) === 0 ? x - y : String(x).localeCompare(String(y));
      return asc ? d : -d;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  });
});
"""


def escape(value: Any) -> str:
    """Text from a record, escaped; nothing for None or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return html.escape(str(value))


def cell_html(value: Any) -> str:
    """A report cell or label, escaped, its ``<br>`` line breaks (the markdown tables' own) kept."""
    return "<br>".join(escape(part) for part in str(value).split("<br>")) if value is not None else ""


def _sort_key(text: str) -> str:
    """``data-sort`` of a cell that starts with a number (``81.2 [79.0, 83.1]``, ``0.81x``), for a numeric sort."""
    m = _NUMBER.match(text.strip())
    return f' data-sort="{float(m.group())!r}"' if m and math.isfinite(float(m.group())) else ""


def html_table(df: pd.DataFrame, index: bool = False, table_id: str | None = None,
           sort: dict[str, list[float | None]] | None = None) -> str:
    """A sortable table of a report frame (every cell escaped); ``sort``: exact values of a column to sort by (else
    each cell's leading number)."""
    head = ([escape(df.index.name)] if index else []) + [cell_html(c) for c in df.columns]
    rows = []
    for pos, (label, row) in enumerate(df.iterrows()):
        cells = [f"<th scope=\"row\">{cell_html(label)}</th>"] if index else []
        for col, value in row.items():
            text = "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
            exact = (sort or {}).get(str(col))
            if exact is not None:
                v = exact[pos]
                key = f' data-sort="{v!r}"' if v is not None and math.isfinite(v) else ""
            else:
                key = _sort_key(text)
            cells.append(f"<td{key}>{cell_html(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    ident = f' id="{table_id}"' if table_id else ""
    return (f'<table class="sortable"{ident}><thead><tr>' + "".join(f"<th>{h}</th>" for h in head)
            + "</tr></thead><tbody>" + "\n".join(rows) + "</tbody></table>")


class Page:
    """The report's body and its charts (each a plotly div; the bundle is inlined once, in :meth:`html`)."""

    def __init__(self, backends: Iterable[str]) -> None:
        self.body: list[str] = []
        self.charts = 0
        self.colors = {b: PALETTE[i % len(PALETTE)] for i, b in enumerate(sorted(set(backends)))}

    def add(self, *chunks: str) -> None:
        self.body.extend(chunks)

    def heading(self, level: int, text: str) -> None:
        self.add(f"<h{level}>{escape(text)}</h{level}>")

    def note(self, text: str) -> None:
        self.add(f'<p class="note">{text}</p>')

    def chart(self, fig: Any, height: int = 380) -> None:
        self.charts += 1
        fig.update_layout(template="plotly_white", height=height, margin={"l": 60, "r": 20, "t": 50, "b": 60})
        self.add(fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"chart-{self.charts}",
                             default_height=f"{height}px", config={"displaylogo": False, "responsive": True}))

    def html(self, title: str) -> str:
        from plotly.offline import get_plotlyjs

        bundle = get_plotlyjs().replace("</script", "<\\/script")
        return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                f"<title>{escape(title)}</title>\n<style>{_STYLE}</style>\n"
                f"<script>{bundle}</script>\n</head>\n<body>\n<h1>{escape(title)}</h1>\n" + "\n".join(self.body)
                + f"\n<script>{_SORT_JS}</script>\n</body>\n</html>\n")
