"""Rewrite rules, in the order the engine tries them (the order is part of the design).

Structural clean-ups come first so the convolution rules see plain products; among those, the
1x1 identity comes before the dense rule (which would also match it, less directly), dense before
down-sampling, then pre-summing and constant folding for the patterns that survive.
"""

from tnc.passes.rules.base import Rewrite, Rule
from tnc.passes.rules.conv import DENSE, DOWNSAMPLE, FOLD, IDENTITY, PRESUM
from tnc.passes.rules.general import (
    DELTAS,
    MERGE_LEGS,
    MERGE_TERMS,
    SQUEEZE,
    ZERO_TERMS,
)

RULES: tuple[Rule, ...] = (ZERO_TERMS, DELTAS, MERGE_TERMS, IDENTITY, DENSE, DOWNSAMPLE, PRESUM, FOLD, SQUEEZE, MERGE_LEGS)

__all__ = ["RULES", "Rewrite", "Rule"]
