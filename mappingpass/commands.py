"""Subcommands after analyze (plan, explain, check); registered by cli."""

from __future__ import annotations


def register(sub, common) -> None:
    return None
