"""Rewrite passes: functions from network to network (derive, delta elimination, expansion)."""
