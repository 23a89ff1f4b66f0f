"""Hardware-aware ghostify: measure on the target runtime what each conversion costs and saves in time."""

from ghostcli.target.decide import BudgetUnreachable, Candidate, Decision, Plan, decide, decide_for_budget
from ghostcli.target.engine import TargetOptions, TargetReport, ghostify_for_target
from ghostcli.target.measure import RuntimeTiming, TimingSource
from ghostcli.target.spec import TARGETS, Target, check_available, parse_target

__all__ = ["TARGETS", "BudgetUnreachable", "Candidate", "Decision", "Plan", "RuntimeTiming", "Target",
           "TargetOptions", "TargetReport", "TimingSource", "check_available", "decide", "decide_for_budget",
           "ghostify_for_target", "parse_target"]
