"""One row's measurements, the pass rule, and the markdown table."""

from __future__ import annotations

from dataclasses import dataclass, field

STALL_BOUND_S = 1.0
# Memory a row may still hold once its load has gone (RSS after minus RSS before, where a row measures it):
# "near its baseline" (issue "Never fall over"), above the noise of the allocator's own caches.
KEPT_BOUND_MB = 32.0


@dataclass
class Result:
    row: str
    fault: str
    offered_rate: float = 0.0  # tracked lines/s the load made and had accepted (broker ack or HTTP 200)
    applied_rate: float = 0.0  # tracked lines applied / (load time + catch-up)
    tracked: int = 0
    lost: int | None = None
    double: int | None = None
    differ: int | None = None  # transitions differing from replay's, lost and doubled fids included
    late: int | None = None  # lines the last process counted late (accepted, not applied): part of `lost`
    notes_lost: int | None = None
    notes_double: int | None = None
    peak_rss_mb: float = 0.0
    stall_s: float = 0.0  # longest /healthz answer seen by the probe
    lag_gauge_s: float | None = None  # streamalert_event_loop_lag_max_seconds, when exposed
    exits: int = 0  # exits nobody asked for (the process was restarted each time)
    stop_codes: list[int] = field(default_factory=list)
    kept_mb: float | None = None  # RSS after the row's series expired minus RSS before its fault
    catchup_s: float | None = None  # after the load ended, until every expected transition was in the log
    seconds: float = 0.0  # the whole row
    notes: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)  # the row's own checks that failed (Env.wrong)

    def failures(self, stall_bound: float = STALL_BOUND_S) -> list[str]:
        """What this row got wrong; empty when it passes."""
        problems = list(self.wrong)
        if self.lost is None or self.lost:
            problems.append(f"lost {self.lost}")
        if self.double is None or self.double:
            problems.append(f"double {self.double}")
        if self.notes_lost:
            problems.append(f"notifications lost {self.notes_lost}")
        if self.notes_double:
            problems.append(f"notifications duplicated {self.notes_double}")
        if self.exits:
            problems.append(f"{self.exits} unasked exit(s)")
        if any(code != 0 for code in self.stop_codes):
            problems.append(f"SIGTERM exit codes {self.stop_codes}")
        if self.kept_mb is not None and self.kept_mb > KEPT_BOUND_MB:
            problems.append(f"kept {self.kept_mb:.0f} MB > {KEPT_BOUND_MB:.0f} MB after expiry")
        if self.stall_s > stall_bound:
            problems.append(f"stall {self.stall_s:.2f}s > {stall_bound}s")
        return problems


def _n(value: int | None) -> str:
    return "n/a" if value is None else f"{value:,}"


def table(results: list[Result]) -> str:
    head = (
        "| row | fault | offered/s | applied/s | tracked | lost | late | double | differ | notif. lost/dup "
        "| peak RSS MB | longest /healthz s | lag gauge s | exits | catch-up s | verdict |"
    )
    lines = [head, "|" + "---|" * 16]
    for r in results:
        notes = "n/a" if r.notes_lost is None else f"{r.notes_lost}/{r.notes_double}"
        lag = "n/a" if r.lag_gauge_s is None else f"{r.lag_gauge_s:.3f}"
        catchup = "n/a" if r.catchup_s is None else f"{r.catchup_s:.1f}"
        failures = r.failures()
        verdict = "ok" if not failures else "FAIL: " + "; ".join(failures)
        lines.append(
            f"| {r.row} | {r.fault} | {r.offered_rate:,.0f} | {r.applied_rate:,.0f} | {_n(r.tracked)} | {_n(r.lost)} "
            f"| {_n(r.late)} | {_n(r.double)} | {_n(r.differ)} | {notes} | {r.peak_rss_mb:,.0f} | {r.stall_s:.3f} "
            f"| {lag} | {r.exits} | {catchup} | {verdict} |"
        )
    detail = [f"- **{r.row}** ({r.seconds:.0f} s): " + "; ".join(r.notes) for r in results if r.notes]
    return "\n".join([*lines, "", *detail])
