"""Line charts for the Monitor: a titled chart of one or several runs' series, a hint underneath.

    chart = ChartPanel("loss", "falls, then flattens", id="chart-loss")
    chart.draw([Line(xs, ys, "#0178D4"), Line(vx, vy, "#0178D4", points=True)], logy=False, legend=text)

Widget: textual-plot, not textual-plotext. Tried both on Textual 8.2.8 (6 charts x 3 series):
textual-plot redrew a chart in ~17 ms at 300 points and ~33 ms at 1,000 against plotext's 30 and
64, takes numpy arrays as they are, draws braille lines that join the points, and styles its axes
from the app's theme through CSS. It has no log axis, so log-y is log10(y) with a formatter that
labels the real values. Every series is thinned first (workbench.train.follow.downsample: min and
max per pixel column), so a 100,000-step run draws a few hundred points and its spikes stay.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass
from math import ceil, floor, log10

import numpy as np
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.events import MouseScrollDown, MouseScrollUp
from textual.widgets import Static
from textual_hires_canvas import Canvas
from textual_plot import HiResMode, NumericAxisFormatter, PlotWidget

from app import messages as M
from workbench.train.follow import downsample
from workbench.train.watch import short_number


@dataclass
class Line:
    xs: np.ndarray
    ys: np.ndarray
    color: str
    points: bool = False  # evaluation series: a few points, drawn as dots on a thin line


LABEL_MAX = 7  # the y axis margin is 8 cells


def tick_label(value: float, label: str) -> str:
    """`label` if it is short enough, else a compact form: 12.5k, 2.5e-5 (never "-0.0" or "e-06")."""
    if label.startswith("-") and not label.strip("-0."):
        label = label[1:]
    if "e" in label:
        mantissa, _, exponent = label.partition("e")
        label = f"{mantissa}e{int(exponent)}"
    if len(label) <= LABEL_MAX:
        return label
    if value and abs(value) < 1e-2:
        mantissa, _, exponent = f"{value:.1e}".partition("e")
        return f"{mantissa}e{int(exponent)}"
    return short_number(value)


class CompactFormatter(NumericAxisFormatter):
    """Nice ticks with short labels (12.5k, 2.5e-5), so the y axis stays narrow."""

    def get_labels_for_ticks(self, ticks):
        return [tick_label(t, label) for t, label in zip(ticks, super().get_labels_for_ticks(ticks))]

    def get_ticks_and_labels(self, min_, max_, max_ticks=8):
        # textual-plot's tick maths fails (log10 of 0) on a range too narrow for floats to tell its
        # ticks apart; such a range has no useful ticks anyway, and a chart must never crash the app.
        try:
            ticks, labels = super().get_ticks_and_labels(min_, max_, max_ticks)
        except (ValueError, ZeroDivisionError, OverflowError):
            return [], []
        return (ticks, labels) if len(set(ticks)) == len(ticks) else ([], [])


class LogFormatter(NumericAxisFormatter):
    """For an axis holding log10(y): ticks at round values of y (1, 2, 5 x 10^k) or at decades."""

    def get_ticks(self, min_, max_, max_ticks=8):
        lo, hi = 10 ** min_, 10 ** max_
        if max_ - min_ >= 2:  # two decades or more: decades
            return [float(k) for k in range(ceil(min_), floor(max_) + 1)]
        ticks = [log10(t) for t in super().get_ticks(lo, hi, max_ticks) if t > 0]
        if len(ticks) < 2:  # a narrow range near a power of ten: 1-2-5 ticks of the decade
            k = floor(min_)
            ticks = [log10(m * 10 ** e) for e in (k, k + 1) for m in (1, 2, 5) if min_ <= log10(m * 10 ** e) <= max_]
        return ticks

    def get_labels_for_ticks(self, ticks):
        return [tick_label(10 ** t, f"{10 ** t:g}") for t in ticks]


class Plot(PlotWidget, can_focus=False, inherit_bindings=False):
    """textual-plot's widget without its zoom/pan keys (they would crowd the footer) and letting the
    mouse wheel scroll the Monitor instead of zooming the chart under the pointer."""

    BINDINGS = []
    paint_s = 0.0

    def _on_mouse_scroll_down(self, event: MouseScrollDown) -> None:
        event.prevent_default()  # skips PlotWidget's zoom handler; the event still bubbles up

    def _on_mouse_scroll_up(self, event: MouseScrollUp) -> None:
        event.prevent_default()

    def _render_plot(self) -> None:
        # A canvas refreshes itself once per cell it sets (thousands for a noisy 100k-step curve; the
        # axes' tick labels too); batching makes that one refresh per canvas per redraw (measured: -15%
        # of a full redraw for the plot; the margins refreshed ~15 times a second while training).
        canvases = list(self.query(Canvas))
        if not any(c.id == "plot" for c in canvases):
            return
        t0 = time.perf_counter()
        with ExitStack() as stack:
            for canvas in canvases:
                stack.enter_context(canvas.batch_refresh())
            super()._render_plot()
        self.paint_s += time.perf_counter() - t0  # read (and reset) by the Monitor to pace its redraws

    def on_canvas_resize(self, event: Canvas.Resize) -> None:
        # PlotWidget resizes its canvases only on refresh(layout=True); a chart that shrinks (the
        # Monitor's scrollbar appearing) would otherwise draw past its right-hand axis.
        event.stop()
        self._needs_canvas_resize = True
        self._rerender()


class ChartPanel(Vertical):
    """Title (with the legend), the chart, and a one-line hint of what healthy looks like."""

    def __init__(self, title: str, hint: str, panel=None, **kw):
        super().__init__(classes="chart", **kw)
        self.title, self.hint = title, hint
        self.panel = panel  # what it charts (workbench.train.follow.Panel), for its owner
        self.drawn_state = None  # what its owner last drew, to skip identical redraws
        self.points_drawn = 0  # after thinning, for tests and the benchmark
        self.drawn_lines: list[Line] = []

    def compose(self) -> ComposeResult:
        yield Static(self.title, classes="chart-title", markup=False)
        yield Plot(allow_pan_and_zoom=False)
        yield Static(M.MONITOR_NO_POINTS, classes="chart-empty", markup=False)
        yield Static(self.hint, classes="chart-hint", markup=False)

    def on_mount(self) -> None:
        plot = self.query_one(Plot)
        plot.margin_top, plot.margin_bottom, plot.margin_left = 0, 1, 8  # no axis labels: the title says it
        plot.set_x_formatter(CompactFormatter())
        self.set_class(True, "-empty")

    def take_paint_s(self) -> float:
        """Seconds spent painting the plot since the last call."""
        plot = self.query_one(Plot)
        spent, plot.paint_s = plot.paint_s, 0.0
        return spent

    def draw(self, lines: list[Line], logy: bool = False, legend: Text | None = None) -> None:
        plot = self.query_one(Plot)
        width = plot.size.width - plot.margin_left if plot.size.width else 100
        buckets = max(20, width * 2)  # braille: two dots per cell across
        thinned = []
        for line in lines:
            xs, ys = line.xs, line.ys
            if logy:
                keep = ys > 0
                xs, ys = xs[keep], np.log10(ys[keep])
            if len(xs):
                xs, ys = downsample(xs, ys, buckets)
                thinned.append(Line(xs, ys, line.color, line.points))
        title = Text(self.title, style="bold")
        if legend is not None and legend.plain:
            title.append("  ").append_text(legend)
        if logy:
            title.append("  " + M.MONITOR_LOG_TAG, style="dim")
        self.query_one(".chart-title", Static).update(title, layout=False)  # one line, always
        self.drawn_lines = thinned
        self.points_drawn = sum(len(t.xs) for t in thinned)
        self.set_class(not thinned, "-empty")
        plot.clear()
        if not thinned:
            return
        plot.set_y_formatter(LogFormatter() if logy else CompactFormatter())
        plot.set_xlimits(*_limits([t.xs for t in thinned], pad=0.0))
        plot.set_ylimits(*_limits([t.ys for t in thinned], pad=0.06))
        for t in thinned:
            if t.points:
                plot.plot(t.xs, t.ys, line_style=f"dim {t.color}", hires_mode=HiResMode.BRAILLE)
                plot.scatter(t.xs, t.ys, marker_style=t.color, marker="•")
            else:
                plot.plot(t.xs, t.ys, line_style=t.color, hires_mode=HiResMode.BRAILLE)
        if plot.size.area:
            # Paint the canvases now, not when the compositor first asks the plot for its (empty) render:
            # then the new chart reaches the screen in one repaint instead of two.
            plot.render()


def _limits(arrays, pad: float) -> tuple[float, float]:
    lo = min(float(np.min(a)) for a in arrays)
    hi = max(float(np.max(a)) for a in arrays)
    if hi - lo <= 1e-9 * max(abs(lo), abs(hi)):  # flat (a constant lr; float noise of an EMA): a band around it
        half = abs(lo) * 0.1 or 1.0
        return lo - half, hi + half
    span = (hi - lo) * pad
    return lo - span, hi + span
