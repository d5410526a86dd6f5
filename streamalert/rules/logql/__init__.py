"""LogQL as a rule syntax: parse a Loki alert expression, check it, translate it into a streamalert rule.

`translate(expr)` gives a Translation (the rule dict plus the engine features it still needs and the notes
on where it is exact only under an assumption); `load_loki_rules(text, source)` does it for a Loki rule
group file. Anything outside the supported subset raises LogQLError naming the construct with its line and
column in the expression. See docs/logql.md.
"""

from streamalert.decode import LINE_FIELD
from streamalert.rules.logql.errors import LogQLError
from streamalert.rules.logql.match import Need
from streamalert.rules.logql.parser import parse
from streamalert.rules.logql.rulefile import LokiRule, LokiRuleFileError, load_loki_rules
from streamalert.rules.logql.translate import Translation, translate

__all__ = [
    "LINE_FIELD",
    "LogQLError",
    "LokiRule",
    "LokiRuleFileError",
    "Need",
    "Translation",
    "load_loki_rules",
    "parse",
    "translate",
]
