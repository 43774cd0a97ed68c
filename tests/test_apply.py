"""The apply-layer helper (issue 15 item 5): the design's sizing rule and reading a permit."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from p31_efficiency.formula import EfficiencyConfig, downsize_hint, hint_fields

from governor_core.apply import EffectiveSize, effective_size, permit_key, read_permit
from governor_core.plugin_api import EfficiencyReading

CORE = {"plan_id": "p-1", "symbol": "BTCUSDT", "side": "BUY", "notional_usd": "1000",
        "decision": "ALLOW", "reason": "within_cap", "allowed_notional_usd": "1000",
        "cap_usd": "20000", "cap_source": "budget", "cooldown_sec": "0",
        "issued_ts": "1700000000.000", "expires_ts": "1700000060.000"}
#: The design's worked example: score 0.2, threshold 0.45, min 0.25, max 120 s.
EXAMPLE = {"eff_score": "0.2000", "eff_confidence": "0.9000", "eff_stale": "0",
           "eff_factor": "0.4444", "eff_action": "DOWNSIZE", "eff_reason": "ok",
           "downsize_factor": "0.4444", "extra_cooldown_sec": "96"}
NONE_HINT = {**EXAMPLE, "eff_score": "0.8000", "eff_factor": "1.0000", "eff_action": "NONE",
             "downsize_factor": "1.0000", "extra_cooldown_sec": "0"}


def permit(**fields: str) -> dict[str, str]:
    return {**CORE, **EXAMPLE, **fields}


# (permit, now, tradable, notional_usd, cooldown_sec, hint prefix, why contains)
TABLE = [
    # The design's worked example: 1,000 × 0.4444, cooldown 0 + 96.
    (permit(), None, True, 444.4, 96, "downsize", "eff_factor 0.4444"),
    (permit(cooldown_sec="30"), None, True, 444.4, 126, "downsize", "30 + 96"),
    # CLAMP: the cap in force is allowed_notional_usd.
    (permit(decision="CLAMP", reason="above_cap", notional_usd="30000",
            allowed_notional_usd="20000"), None, True, 8888.0, 96, "downsize", "CLAMP"),
    ({**CORE, **NONE_HINT}, None, True, 1000.0, 0, "none", "ALLOW 1000"),
    ({**CORE, **NONE_HINT, "extra_cooldown_sec": "50"}, None, True, 1000.0, 0, "none", ""),
    (dict(CORE), None, True, 1000.0, 0, "absent", "ALLOW"),
    (permit(eff_factor="0.0000", downsize_factor="0.0000"), None, False, 0.0, 96,
     "downsize", ""),
    # DENY → 0, whatever the hint.
    (permit(decision="DENY", reason="kill_switch", allowed_notional_usd="0"), None, False,
     0.0, 96, "downsize", "DENY (kill_switch)"),
    # Expiry, only when now is given.
    (permit(), 1700000059.0, True, 444.4, 96, "downsize", ""),
    (permit(), 1700000061.0, False, 0.0, 96, "downsize", "expired"),
    (permit(expires_ts="soon"), 1700000000.0, False, 0.0, 96, "downsize",
     "malformed permit: expires_ts='soon'"),
    # Malformed core fields: not tradable, a clear reason.
    (permit(decision="MAYBE"), None, False, 0.0, 0, "absent", "decision='MAYBE'"),
    ({k: v for k, v in permit().items() if k != "decision"}, None, False, 0.0, 0, "absent",
     "decision=None"),
    (permit(allowed_notional_usd="1e3"), None, False, 0.0, 96, "downsize",
     "allowed_notional_usd='1e3'"),
    (permit(allowed_notional_usd="-5"), None, False, 0.0, 96, "downsize", "'-5'"),
    (permit(cooldown_sec="1.5"), None, False, 0.0, 0, "absent", "cooldown_sec='1.5'"),
    (permit(cooldown_sec=""), None, False, 0.0, 0, "absent", "cooldown_sec=''"),
    # Malformed hints: ignored (fail-open), the permit's own size and cooldown.
    (permit(eff_factor="nan", downsize_factor="nan"), None, True, 1000.0, 0,
     "ignored: eff_factor='nan'", ""),
    (permit(eff_factor="1.5", downsize_factor="1.5"), None, True, 1000.0, 0, "ignored", ""),
    (permit(downsize_factor="0.5000"), None, True, 1000.0, 0, "ignored: eff_factor='0.4444' "
     "differs", ""),
    (permit(eff_action="BLOCK"), None, True, 1000.0, 0, "ignored: eff_action='BLOCK'", ""),
    (permit(extra_cooldown_sec="-1"), None, True, 1000.0, 0,
     "ignored: extra_cooldown_sec='-1'", ""),
    ({k: v for k, v in permit().items() if k not in ("eff_factor", "downsize_factor")},
     None, True, 1000.0, 0, "ignored: DOWNSIZE without eff_factor", ""),
    # downsize_factor alone (the design's alternative name) is enough.
    ({k: v for k, v in permit().items() if k != "eff_factor"}, None, True, 444.4, 96,
     "downsize", ""),
]


@pytest.mark.parametrize(("fields", "now", "tradable", "notional", "cooldown", "hint", "why"),
                         TABLE)
def test_effective_size_table(fields: dict[str, str], now: float | None, tradable: bool,
                              notional: float, cooldown: int, hint: str, why: str) -> None:
    size = effective_size(fields, now=now)
    assert isinstance(size, EffectiveSize)
    assert size.tradable is tradable
    assert size.notional_usd == pytest.approx(notional)
    assert size.cooldown_sec == cooldown
    assert size.hint.startswith(hint)
    assert why in size.why


def test_worked_example_from_the_plugin_formula() -> None:
    """The plugin's own fields for score 0.2 (design defaults) size to 0.4444 and 96 s."""
    reading = EfficiencyReading("ok", 0.2, 0.9)
    fields = hint_fields(reading, downsize_hint(reading, EfficiencyConfig()))
    size = effective_size({**CORE, **fields})
    assert (fields["eff_factor"], fields["extra_cooldown_sec"]) == ("0.4444", "96")
    assert (size.factor, size.cooldown_sec) == (0.4444, 96)
    assert size.notional_usd == pytest.approx(444.4)


@given(st.dictionaries(st.sampled_from([*CORE, *EXAMPLE, "other"]),
                       st.text(max_size=12), max_size=25))
def test_never_raises_and_never_exceeds_the_allowed(fields: dict[str, str]) -> None:
    size = effective_size(fields, now=1700000000.0)
    assert size.notional_usd >= 0 and size.cooldown_sec >= 0
    if size.tradable:
        assert fields["decision"] in ("ALLOW", "CLAMP")
        assert size.notional_usd <= float(fields["allowed_notional_usd"])


@pytest.mark.redis
def test_read_permit_returns_a_permit_written_while_waiting(real_redis) -> None:
    def write_later() -> None:
        time.sleep(0.1)
        real_redis.hset(permit_key("p-late"), mapping=permit(plan_id="p-late"))

    writer = threading.Thread(target=write_later)
    started = time.monotonic()
    writer.start()
    found = read_permit(real_redis, "p-late", timeout_sec=5.0)
    waited = time.monotonic() - started
    writer.join()
    assert found == permit(plan_id="p-late")
    assert 0.1 <= waited < 1.0  # found at the next poll, not at the timeout
    assert effective_size(found).notional_usd == pytest.approx(444.4)


@pytest.mark.redis
def test_read_permit_times_out_with_none(real_redis) -> None:
    started = time.monotonic()
    assert read_permit(real_redis, "p-never", timeout_sec=0.2) is None
    assert 0.2 <= time.monotonic() - started < 0.5
    real_redis.hset(permit_key("p-now"), mapping=dict(CORE))
    assert read_permit(real_redis, "p-now", timeout_sec=0.0) == CORE


def test_read_permit_polls_quickly_then_spaced_out() -> None:
    """Pauses double from 2 ms to at most 50 ms, and never overshoot the deadline."""
    clock = [0.0]
    pauses: list[float] = []

    class Empty:
        def hgetall(self, key: str) -> dict[str, str]:
            assert key == "quantum:permit:p-x"
            return {}

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        clock[0] += seconds

    assert read_permit(Empty(), "p-x", 0.3, clock=lambda: clock[0], sleep=sleep) is None
    assert pauses[:6] == [0.002, 0.004, 0.008, 0.016, 0.032, 0.05]
    assert max(pauses) == 0.05 and sum(pauses) == pytest.approx(0.3)


def test_documented_in_readme_and_docs() -> None:
    from dataclasses import fields
    from pathlib import Path

    import governor_core.apply as apply

    root = Path(__file__).resolve().parents[1]
    readme = root.joinpath("README.md").read_text()
    doc = root.joinpath("docs", "apply-layer.md").read_text()
    assert "## For the apply layer" in readme and "docs/apply-layer.md" in readme
    for name in [*apply.__all__, *(item.name for item in fields(EffectiveSize))]:
        assert f"`{name}`" in doc, name
    assert "`eff_factor=0.4444`" in doc and "`extra_cooldown_sec=96`" in doc
