"""Detection rules: small named functions with metadata, run by ``RulesDetector``."""

from breachwatch.detectors.rules.core import Hit, Rule, Verdict, rule
from breachwatch.detectors.rules.detector import RULES, RulesDetector

__all__ = ["RULES", "Hit", "Rule", "RulesDetector", "Verdict", "rule"]
