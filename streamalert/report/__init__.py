"""`streamalert replay --report FILE`: a self-contained HTML page of what the rules did over the replay.

`Recorder` takes the engine's samples (Engine.sampler) and the run's transitions; `render` turns them into
the page. Nothing is recorded, and the engine pays one test per evaluation, when no report is asked for.
"""

from streamalert.report.html import render
from streamalert.report.recorder import Recorder

__all__ = ["Recorder", "render"]
