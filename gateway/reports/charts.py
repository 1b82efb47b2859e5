"""Bar and line charts of a report as SVG markup: the only code that imports matplotlib (Agg)."""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

from matplotlib.figure import Figure

SIZE = (7.0, 2.8)  # inches


def bar_chart(title: str, labels: Sequence[str], values: Sequence[float], fmt: str = "svg") -> str:
    """A bar chart: an <svg> element (no XML declaration, no script), or with ``fmt="png"`` a
    data: URL of a PNG (for the PDF)."""
    figure = Figure(figsize=SIZE)
    axes = figure.add_subplot()
    axes.bar(list(labels), list(values), color="#3b6ea5")
    axes.set_title(title)
    axes.tick_params(axis="x", labelrotation=45, labelsize=7)
    return _drawn(figure, fmt)


def line_chart(
    title: str,
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    fmt: str = "svg",
) -> str:
    """A line chart, one line per (name, values), drawn as bar_chart's."""
    figure = Figure(figsize=SIZE)
    axes = figure.add_subplot()
    for name, values in series:
        axes.plot(list(labels), list(values), label=name, marker="." if len(labels) < 40 else "")
    axes.set_title(title)
    axes.legend(fontsize=7)
    step = max(1, len(labels) // 12)
    axes.set_xticks(range(0, len(labels), step), [labels[i] for i in range(0, len(labels), step)])
    axes.tick_params(axis="x", labelrotation=45, labelsize=7)
    return _drawn(figure, fmt)


def _drawn(figure: Figure, fmt: str) -> str:
    figure.tight_layout()
    if fmt == "png":
        data = io.BytesIO()
        figure.savefig(data, format="png", dpi=110)
        return "data:image/png;base64," + base64.b64encode(data.getvalue()).decode("ascii")
    out = io.StringIO()
    figure.savefig(out, format="svg", metadata={"Date": None})
    text = out.getvalue()
    return _presentational(text[text.index("<svg") :])


_STYLE_ELEMENT = re.compile(r"<style[^>]*>.*?</style>", re.DOTALL)
_STYLE_ATTRIBUTE = re.compile(r'style="([^"]*)"')


def _presentational(svg: str) -> str:
    """The SVG without CSS: matplotlib writes ``style="fill: ..."`` attributes and a <style>
    element, which a strict Content-Security-Policy (no inline style) blocks; the same
    properties as SVG presentation attributes (``fill="..."``) are markup and pass."""

    def attributes(match: re.Match[str]) -> str:
        pairs = (part.split(":", 1) for part in match.group(1).split(";") if ":" in part)
        return " ".join(f'{name.strip()}="{value.strip()}"' for name, value in pairs)

    return _STYLE_ATTRIBUTE.sub(attributes, _STYLE_ELEMENT.sub("", svg))
