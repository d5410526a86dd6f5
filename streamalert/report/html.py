"""The replay report as one self-contained HTML page: inline CSS and SVG, no script, no external resource.

Per rule, a timeline for each of its most telling series (those that left the inactive phase first, then
the highest peaks; MAX_LANES of them): the window value the engine computed (a step line), the threshold
(dashed), pending periods (amber, hatched), firing periods (red), absence gaps (grey, hatched, from the
last event seen to the resolving one) and the transitions (triangles up for firing, down for resolved). All
timelines of a report share one time axis, so rules can be compared by eye. A table lists every
transition. Every text from the input, the rules or the files is escaped. Print CSS puts one rule per
block and keeps the colours.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

from streamalert.config.rules import Rule
from streamalert.decode import format_ms
from streamalert.model import AlertState, Transition
from streamalert.report.recorder import Recorder, RuleTrace, SeriesTrace, State

MAX_LANES = 6
WIDTH = 1000  # the SVG's user units; it scales to the page width
HEIGHT = 110
LEFT, RIGHT, TOP, BOTTOM = 56, 28, 8, 22  # plot margins inside the SVG

_CSS = """
:root { --fire: #d62728; --pend: #e6a100; --gap: #7f7f7f; --ok: #2ca02c; --ink: #1d1d1f; --grid: #e4e4e8; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
       margin: 0 auto; padding: 16px 24px; max-width: 1280px; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 0; }
.meta, .note { color: #555; font-size: 12px; }
.legend span { display: inline-block; margin-right: 14px; font-size: 12px; }
.legend i { display: inline-block; width: 14px; height: 10px; margin-right: 4px; vertical-align: -1px; }
.rule { border: 1px solid var(--grid); border-radius: 6px; padding: 10px 12px; margin: 14px 0; }
.rule.fired { border-left: 4px solid var(--fire); }
.lane { margin: 6px 0 0; } .lane figcaption { font-size: 12px; color: #333; }
svg { width: 100%; height: auto; display: block; }
svg text { font: 11px system-ui, sans-serif; fill: #555; }
.axis line { stroke: var(--grid); } .frame { fill: #fcfcfd; stroke: var(--grid); }
.value { fill: none; stroke: #1f77b4; stroke-width: 1.6; }
.threshold { stroke: var(--ink); stroke-dasharray: 5 4; stroke-width: 1; }
.firing { fill: var(--fire); fill-opacity: 0.16; } .pending { fill: url(#hatch-pend); }
.gap { fill: url(#hatch-gap); } .mark.firing { fill: var(--fire); fill-opacity: 1; }
.mark.resolved { fill: var(--ok); }
table { border-collapse: collapse; width: 100%; font-size: 12px; }
th, td { border-bottom: 1px solid var(--grid); padding: 3px 6px; text-align: left; vertical-align: top; }
td.state-firing { color: var(--fire); font-weight: 600; } td.state-resolved { color: var(--ok); }
@media print {
  body { max-width: none; padding: 0; font-size: 11px; }
  .rule { break-inside: avoid; page-break-inside: avoid; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  @page { size: A4 landscape; margin: 12mm; }
}
"""

_DEFS = (
    '<defs><pattern id="hatch-pend" width="6" height="6" patternUnits="userSpaceOnUse" '
    'patternTransform="rotate(45)"><rect width="6" height="6" fill="#e6a100" fill-opacity="0.18"/>'
    '<line x1="0" y1="0" x2="0" y2="6" stroke="#e6a100" stroke-width="2"/></pattern>'
    '<pattern id="hatch-gap" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(-45)">'
    '<line x1="0" y1="0" x2="0" y2="6" stroke="#7f7f7f" stroke-width="1.5"/></pattern></defs>'
)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _clock(ms: int) -> str:
    return format_ms(ms)[11:19]


def _num(value: float) -> str:
    return f"{value:.4g}"


class _Scale:
    def __init__(self, start: int, end: int, top: float) -> None:
        self.start, self.span = start, max(1, end - start)
        self.top = top if top > 0 else 1.0

    def x(self, ms: int) -> float:
        return round(LEFT + (WIDTH - LEFT - RIGHT) * (ms - self.start) / self.span, 1)

    def y(self, value: float) -> float:
        return round(HEIGHT - BOTTOM - (HEIGHT - TOP - BOTTOM) * min(value, self.top) / self.top, 1)


def render(recorder: Recorder, title: str, inputs: Sequence[str]) -> str:
    """The whole page."""
    start = recorder.first_ms if recorder.first_ms is not None else 0
    end = recorder.last_ms if recorder.last_ms is not None else start
    fired = {t.rule for t in recorder.transitions if t.state is AlertState.FIRING}
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<header><h1>{_e(title)}</h1>",
        f'<p class="meta">Input: {_e(", ".join(inputs))}<br>Event time {_e(format_ms(start))} to '
        f"{_e(format_ms(end))} (UTC) &middot; {len(recorder.rules)} rules &middot; "
        f"{len(recorder.transitions)} transitions &middot; {len(fired)} rules fired</p>",
        '<p class="legend"><span><i style="background:#1f77b4"></i>window value</span>'
        '<span><i style="border-top:2px dashed #1d1d1f;height:0"></i>threshold</span>'
        '<span><i style="background:#e6a100;opacity:.5"></i>pending</span>'
        '<span><i style="background:#d62728;opacity:.3"></i>firing</span>'
        '<span><i style="background:repeating-linear-gradient(-45deg,#7f7f7f 0 2px,transparent 2px 5px)"></i>'
        "absence gap</span><span>&#9650; fired &#9660; resolved</span></p>",
        '<p class="note">Values are those the engine computed at the instants it evaluated each series '
        "(events, window expiry, timers), drawn as steps; long series are downsampled to their peaks.</p>",
        "</header><main>",
    ]
    for trace in recorder.rules:
        transitions = [t for t in recorder.transitions if t.rule == trace.rule.name]
        parts.append(_rule_section(trace, transitions, start, end))
    parts.append(_table(recorder.transitions))
    parts.append("</main></body></html>\n")
    return "\n".join(parts)


def _describe(rule: Rule) -> str:
    if rule.kind == "absence":
        text = f"absent_for {rule.absent_ms / 1000:g}s"
    else:
        condition = rule.condition.text if rule.condition is not None else ""
        text = f"{condition} over {rule.window_ms / 1000:g}s"
        if rule.for_ms:
            text += f" for {rule.for_ms / 1000:g}s"
    if rule.group_by:
        text += f" by {', '.join(rule.group_by)}"
    return text


def _rule_section(trace: RuleTrace, transitions: list[Transition], start: int, end: int) -> str:
    rule = trace.rule
    fired = any(t.state is AlertState.FIRING for t in transitions)
    out = [
        f'<section class="rule{" fired" if fired else ""}" id="rule-{_e(rule.name)}" data-rule="{_e(rule.name)}" '
        f'data-transitions="{len(transitions)}">',
        f'<h2>{_e(rule.name)}</h2><p class="meta">{_e(_describe(rule))} &middot; {_e(rule.source)}</p>',
    ]
    if not trace.series:
        out.append('<p class="note">No event matched this rule in this replay.</p></section>')
        return "\n".join(out)
    lanes = sorted(trace.series.values(), key=lambda s: (not s.active, -s.peak, s.key))
    for series in lanes[:MAX_LANES]:
        mine = [t for t in transitions if _key_of(rule, t) == series.key]
        out.append(_lane(rule, series, mine, start, end))
    hidden = len(lanes) - MAX_LANES + trace.overflow
    if hidden > 0:
        out.append(f'<p class="note">{hidden} more series not drawn (their transitions are in the table).</p>')
    out.append("</section>")
    return "\n".join(out)


def _key_of(rule: Rule, transition: Transition) -> tuple[str, ...]:
    labels = dict(transition.labels)
    return tuple(labels.get(name, "") for name in rule.group_by)


def _periods(series: SeriesTrace, end: int) -> list[tuple[int, int, State]]:
    changes = series.changes
    return [(at, changes[k + 1][0] if k + 1 < len(changes) else end, state) for k, (at, state) in enumerate(changes)]


def _lane(rule: Rule, series: SeriesTrace, transitions: Iterable[Transition], start: int, end: int) -> str:
    absence = rule.kind == "absence"
    if absence:
        threshold: float | None = rule.absent_ms / 1000
        unit = "seconds since the last event"
    else:
        threshold = rule.condition.threshold if rule.condition is not None else None
        unit = rule.condition.aggregate if rule.condition is not None else "value"
    scale = _Scale(start, end, 1.15 * max(series.peak, threshold or 0.0))
    label = ", ".join(f"{g}={v}" for g, v in zip(rule.group_by, series.key, strict=True)) or "all matching events"
    svg = [
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{_e(rule.name)} {_e(label)}">',
        _DEFS,
        f'<rect class="frame" x="{LEFT}" y="{TOP}" width="{WIDTH - LEFT - RIGHT}" height="{HEIGHT - TOP - BOTTOM}"/>',
        _axis(scale, start, end),
    ]
    for at, until, state in _periods(series, end):
        if state == "inactive":
            continue
        svg.append(_band(state, scale, at, until))
    if absence:
        for t in transitions:
            if t.state is AlertState.FIRING:
                gap_start = t.at_ms - int(float(t.value) * 1000)
                gap_end = next((r.at_ms for r in transitions if r.at_ms > t.at_ms), end)
                svg.append(_band("gap", scale, max(start, gap_start), gap_end))
    svg.append(f'<text x="{LEFT - 4}" y="{HEIGHT - BOTTOM}" text-anchor="end">0</text>')
    if threshold is not None:
        y = scale.y(threshold)
        svg.append(f'<line class="threshold" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y}" y2="{y}"/>')
        svg.append(f'<text x="{LEFT - 4}" y="{y + 4}" text-anchor="end">{_e(_num(threshold))}</text>')
    svg.append(_path(series, scale, absence, end))
    for t in transitions:
        x = scale.x(t.at_ms)
        up = t.state is AlertState.FIRING
        y = TOP + 1 if up else HEIGHT - BOTTOM - 1
        points = f"{x - 5},{y + 9} {x + 5},{y + 9} {x},{y}" if up else f"{x - 5},{y - 9} {x + 5},{y - 9} {x},{y}"
        text = f"{t.state.value} at {format_ms(t.at_ms)} (value {_num(float(t.value))})"
        svg.append(
            f'<polygon class="mark {_e(t.state.value)}" data-at="{_e(format_ms(t.at_ms))}" points="{points}">'
            f"<title>{_e(text)}</title></polygon>"
        )
    svg.append("</svg>")
    caption = f"{_e(label)} &middot; {_e(unit)}, peak {_e(_num(series.peak))} &middot; {series.samples} evaluations"
    return f'<figure class="lane" data-series="{_e(label)}"><figcaption>{caption}</figcaption>{"".join(svg)}</figure>'


def _band(kind: str, scale: _Scale, start: int, end: int) -> str:
    """A shaded period over the whole plot height, titled with its times."""
    x0, x1 = scale.x(start), scale.x(end)
    name = "absence gap" if kind == "gap" else kind
    return (
        f'<rect class="{kind}" data-from="{_e(format_ms(start))}" data-to="{_e(format_ms(end))}" x="{x0}" y="{TOP}" '
        f'width="{max(1.0, x1 - x0):.1f}" height="{HEIGHT - TOP - BOTTOM}">'
        f"<title>{_e(f'{name} {_clock(start)} to {_clock(end)}')}</title></rect>"
    )


def _path(series: SeriesTrace, scale: _Scale, absence: bool, end: int) -> str:
    if not series.points:
        return ""
    first_at, first_value = series.points[0]
    d = [f"M{scale.x(first_at)} {scale.y(first_value)}"]
    for at, value in series.points[1:]:
        if absence:  # silence grows between evaluations: a slope, not a step
            d.append(f"L{scale.x(at)} {scale.y(value)}")
        else:
            d.append(f"H{scale.x(at)} V{scale.y(value)}")
    return f'<path class="value" d="{" ".join(d)}"/>'


def _axis(scale: _Scale, start: int, end: int) -> str:
    span = max(1, end - start)
    steps = [1, 5, 10, 30, 60, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400]
    step = next((s * 1000 for s in steps if span / (s * 1000) <= 10), 86_400_000 * max(1, span // 864_000_000))
    first = start - start % step + (step if start % step else 0)
    out = ['<g class="axis">']
    for ms in range(first, end + 1, step):
        x = scale.x(ms)
        out.append(f'<line x1="{x}" x2="{x}" y1="{TOP}" y2="{HEIGHT - BOTTOM}"/>')
        out.append(f'<text x="{x}" y="{HEIGHT - 6}" text-anchor="middle">{_clock(ms)[:5]}</text>')
    out.append("</g>")
    return "".join(out)


def _table(transitions: list[Transition]) -> str:
    rows = ["<section><h2>Transitions</h2>"]
    if not transitions:
        rows.append('<p class="note">No rule changed state.</p></section>')
        return "\n".join(rows)
    rows.append(
        '<table id="transitions"><thead><tr><th>Time (UTC)</th><th>Rule</th><th>State</th><th>Labels</th>'
        "<th>Value</th><th>Summary</th></tr></thead><tbody>"
    )
    for t in sorted(transitions, key=lambda t: (t.at_ms, t.rule)):
        labels = ", ".join(f"{k}={v}" for k, v in t.labels)
        summary = dict(t.annotations).get("summary", "")
        rows.append(
            f'<tr data-rule="{_e(t.rule)}" data-state="{_e(t.state.value)}"><td>{_e(format_ms(t.at_ms))}</td>'
            f'<td>{_e(t.rule)}</td><td class="state-{_e(t.state.value)}">{_e(t.state.value)}</td>'
            f"<td>{_e(labels)}</td><td>{_e(_num(float(t.value)))}</td><td>{_e(summary)}</td></tr>"
        )
    rows.append("</tbody></table></section>")
    return "\n".join(rows)
