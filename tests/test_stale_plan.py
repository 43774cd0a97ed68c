"""Gate 1a (SPEC 3.2): a plan older than ``GOVERNOR_MAX_PLAN_AGE_SEC`` is denied as
``stale_plan``, measured from its ``ts``, else from its stream entry id; the kill switch
has precedence; counted and alerted. Against a real redis-server, with a fixed clock."""

from __future__ import annotations

import pytest
import redis
from test_governor_integration import ISSUED, NOW, PLANS, Governor, pending, plan

from governor_core.config import ConfigError, EnvReader
from governor_core.governor.config import GovernorConfig

pytestmark = pytest.mark.redis


def permit(client: redis.Redis, plan_id: str) -> dict[str, str]:
    return client.hgetall(f"quantum:permit:{plan_id}")


def at(seconds_ago: float) -> str:
    """A stream entry id made ``seconds_ago`` before NOW."""
    return f"{int((NOW - seconds_ago) * 1000)}-0"


def test_a_plan_older_than_the_limit_is_denied_stale_plan(real_redis: redis.Redis) -> None:
    # entry ids must grow: the ones made in the past first, then auto ids (today, > NOW)
    real_redis.xadd(PLANS, {"plan_id": "id-old", "symbol": "BTCUSDT", "side": "BUY",
                            "notional_usd": "100"}, id=at(45))
    real_redis.xadd(PLANS, {"plan_id": "id-fresh", "symbol": "BTCUSDT", "side": "BUY",
                            "notional_usd": "100"}, id=at(5))
    # with a ts, the ts counts, not the entry id (made "now" by the server, after NOW)
    plan(real_redis, "ts-old", ts=str(NOW - 30.5))
    plan(real_redis, "ts-edge", ts=str(NOW - 30))  # exactly the limit: not older than it
    plan(real_redis, "ts-fresh", ts=str(NOW - 1))
    plan(real_redis, "no-ts")  # entry id of today: ahead of NOW, so not stale
    real_redis.hset("quantum:portfolio:budget:BTCUSDT", "budget_usd", "50")
    gov = Governor(real_redis, {"GOVERNOR_MAX_PLAN_AGE_SEC": "30"})
    assert gov.drain() == 6
    reasons = {plan_id: (permit(real_redis, plan_id)["decision"],
                         permit(real_redis, plan_id)["reason"],
                         permit(real_redis, plan_id)["allowed_notional_usd"])
               for plan_id in ("id-old", "id-fresh", "ts-old", "ts-edge", "ts-fresh", "no-ts")}
    assert reasons == {
        "id-old": ("DENY", "stale_plan", "0"), "ts-old": ("DENY", "stale_plan", "0"),
        "id-fresh": ("CLAMP", "above_cap", "50"), "ts-edge": ("CLAMP", "above_cap", "50"),
        "ts-fresh": ("CLAMP", "above_cap", "50"), "no-ts": ("CLAMP", "above_cap", "50")}
    # the permit stream records the decision; the plugins still add their fields
    stream = {f["plan_id"]: f["reason"] for _, f in real_redis.xrange(ISSUED)}
    assert stream["id-old"] == stream["ts-old"] == "stale_plan"
    assert "eff_reason" in permit(real_redis, "ts-old")
    assert gov.metric("governor_permit_reasons_total", {"reason": "stale_plan"}) == 2
    assert gov.metric("governor_permit_reasons_total", {"reason": "above_cap"}) == 4
    assert gov.metric("governor_permits_issued_total", {"decision": "DENY"}) == 2
    assert pending(real_redis) == 0


def test_the_kill_switch_has_precedence_over_a_stale_plan(real_redis: redis.Redis) -> None:
    real_redis.set("quantum:governor:kill", "1")
    plan(real_redis, "k-old", ts=str(NOW - 600))
    gov = Governor(real_redis, {"GOVERNOR_MAX_PLAN_AGE_SEC": "30"})
    gov.drain()
    assert permit(real_redis, "k-old")["reason"] == "kill_switch"
    assert gov.metric("governor_permit_reasons_total", {"reason": "kill_switch"}) == 1
    assert gov.metric("governor_permit_reasons_total", {"reason": "stale_plan"}) == 0


def test_a_backlog_after_an_outage_is_not_a_burst_of_stale_permits(
        real_redis: redis.Redis) -> None:
    """Plans queued while the governor was away for two minutes (the default limit)."""
    for i in range(120):
        plan(real_redis, f"bk-{i}", ts=str(NOW - 120 + i))  # one a second, 120 s to 1 s old
    gov = Governor(real_redis)
    gov.drain()
    denied = {f["plan_id"] for _, f in real_redis.xrange(ISSUED) if f["reason"] == "stale_plan"}
    limit = GovernorConfig.from_env(EnvReader({})).max_plan_age_sec
    assert denied == {f"bk-{i}" for i in range(120) if 120 - i > limit}
    assert real_redis.xlen(ISSUED) == 120


def test_zero_turns_the_gate_off(real_redis: redis.Redis) -> None:
    plan(real_redis, "z-old", ts=str(NOW - 10**6))
    Governor(real_redis, {"GOVERNOR_MAX_PLAN_AGE_SEC": "0"}).drain()
    assert permit(real_redis, "z-old")["reason"] == "no_cap"


@pytest.mark.parametrize(("value", "parsed"), [(None, 30), ("0", 0), ("5", 5), ("3600", 3600)])
def test_setting(value: str | None, parsed: int) -> None:
    env = {} if value is None else {"GOVERNOR_MAX_PLAN_AGE_SEC": value}
    assert GovernorConfig.from_env(EnvReader(env)).max_plan_age_sec == parsed


@pytest.mark.parametrize("value", ["-1", "soon", "1.5", "30s"])
def test_a_bad_setting_names_the_variable(value: str) -> None:
    with pytest.raises(ConfigError, match="GOVERNOR_MAX_PLAN_AGE_SEC"):
        GovernorConfig.from_env(EnvReader({"GOVERNOR_MAX_PLAN_AGE_SEC": value}))


def test_claim_idle_default_is_below_the_plan_age_limit() -> None:
    """A crashed governor's plans are claimed (within 1.5 × CLAIM_IDLE) while still
    fresh enough to be permitted."""
    config = GovernorConfig.from_env(EnvReader({}))
    assert config.claim_idle_ms == 10_000
    assert 1.5 * config.claim_idle_ms / 1000 < config.max_plan_age_sec
