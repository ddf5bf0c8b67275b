"""The process's file-descriptor limit, raised to the most allowed at start."""

from __future__ import annotations

import resource
from dataclasses import dataclass

#: What an unlimited hard limit is taken as (Linux's default fs.nr_open).
NR_OPEN_DEFAULT = 1_048_576


@dataclass(frozen=True, slots=True)
class DescriptorLimit:
    soft_before: int
    soft: int  # in force now (unlimited is read as NR_OPEN_DEFAULT)
    hard: int  # -1: unlimited


def raise_descriptor_limit() -> DescriptorLimit:
    """Raise the soft RLIMIT_NOFILE to the hard limit (the most a process may do alone)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else NR_OPEN_DEFAULT
    if soft == resource.RLIM_INFINITY or soft >= target:
        return DescriptorLimit(_soft(soft), _soft(soft), _number(hard))
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (OSError, ValueError):
        return DescriptorLimit(soft, soft, _number(hard))
    return DescriptorLimit(soft, target, _number(hard))


def _number(limit: int) -> int:
    return -1 if limit == resource.RLIM_INFINITY else limit


def _soft(limit: int) -> int:
    return NR_OPEN_DEFAULT if limit == resource.RLIM_INFINITY else limit
