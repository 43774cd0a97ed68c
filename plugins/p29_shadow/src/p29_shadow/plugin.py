"""Placeholder: the shadow proposer is being built (issue 3)."""

from __future__ import annotations


class ShadowProposerPlugin:
    pass


plugin = ShadowProposerPlugin()
