"""Every Redis key and stream name of the SPEC 2 schema, in one place.

Other services write the inputs and read the outputs by these exact names (dashboards,
scripts and the apply layer depend on them); ``docs/`` describes each. A per-symbol or
per-id key is a prefix here, completed by the caller (``PERMIT_PREFIX + plan_id``).
"""

from __future__ import annotations

# Inputs, written by other services.
EFFICIENCY_PREFIX = "quantum:capital:efficiency:"
BUDGET_PREFIX = "quantum:portfolio:budget:"
PORTFOLIO_KEY = "quantum:state:portfolio"
STRESS_PREFIX = "quantum:cluster:stress:"
REGIME_STREAM = "quantum:stream:regime.state"
CLUSTER_MAP_KEY = "quantum:config:symbol.cluster"
PLAN_STREAM = "quantum:stream:apply.plan"
KILL_KEY = "quantum:governor:kill"
#: Runtime override of P29_MODE, written by ``quantum-allocation promote``/``rollback``.
MODE_KEY = "quantum:config:allocation.mode"

# Outputs.
PERMIT_PREFIX = "quantum:permit:"
PERMIT_STREAM = "quantum:stream:permit.issued"
DEAD_STREAM = "quantum:stream:apply.plan.dead"
TARGET_PREFIX = "quantum:allocation:target:"
DECISION_STREAM = "quantum:stream:allocation.decision"
PROPOSAL_STREAM = "quantum:stream:allocation.target.proposed"
PROPOSAL_PREFIX = "quantum:allocation:target:proposed:"
#: A host's effective configuration, one hash per config_id (no TTL; governor_core.snapshot).
SNAPSHOT_PREFIX = "quantum:config:snapshot:"
#: The operator commands' record (SPEC 8): one entry per change of state.
LEDGER_STREAM = "quantum:stream:ops.ledger"
#: Errors the allocation service logged, for ``quantum-allocation readiness``.
ALLOCATION_ERROR_STREAM = "quantum:stream:allocation.errors"
