"""Pruning (Trimming the Fat): importance scores, the keep rule, removal schedules."""

from gstrim.prune.keep import prune_mask_count, prune_mask_gamma, removal_order, survivors_schedule

__all__ = ["prune_mask_count", "prune_mask_gamma", "removal_order", "survivors_schedule"]
