"""Each Lua script of governor_core/lua, run directly through the registry on a real Redis.

The scripts are tested on their own KEYS/ARGV contract (their header), with a small set of
core field names: the issue script takes the names in ARGV, so nothing here depends on the
governor's CORE_FIELDS.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import redis

import governor_core
from governor_core.governor.faults import redis_message
from governor_core.scripts import SCRIPTS, Script, ScriptRegistry, is_noscript
from governor_core.testing import start_redis

LUA_DIR = Path(governor_core.__file__).parent / "lua"
PLAN_STREAM = "quantum:stream:apply.plan"
PERMIT_STREAM = "quantum:stream:permit.issued"
DEAD_STREAM = "quantum:stream:apply.plan.dead"
GROUP = "governor"
OTHER_GROUP = "audit"  # a second group on the plan stream, which the scripts must not ack
CORE = ("plan_id", "symbol", "side", "decision")
TTL = 777
MAXLEN = 10_000
CONFIG_ID = "0123456789ab"
RECORD = [("config_id", CONFIG_ID)]  # the last field of every permit and stream entry

Row = tuple[str, int, Sequence[str]]  # plan id, set index, core values
FieldSet = Sequence[tuple[str, str]]


def core_values(plan_id: str) -> list[str]:
    return [plan_id, "BTCUSDT", "BUY", f"ALLOW-{plan_id}"]


def core_fields(plan_id: str) -> list[tuple[str, str]]:
    return list(zip(CORE, core_values(plan_id), strict=True))


def permit_key(plan_id: str) -> str:
    return f"quantum:permit:{plan_id}"


def pending_plans(client: redis.Redis, count: int) -> list[str]:
    """``count`` plans on the plan stream, delivered (pending) to both groups."""
    ids = [client.xadd(PLAN_STREAM, {"n": str(n)}) for n in range(count)]
    for group in (GROUP, OTHER_GROUP):
        client.xgroup_create(PLAN_STREAM, group, id="0")
        client.xreadgroup(group, "c1", {PLAN_STREAM: ">"})
    return ids


def pending(client: redis.Redis, group: str = GROUP) -> list[str]:
    return [entry["message_id"]
            for entry in client.xpending_range(PLAN_STREAM, group, "-", "+", 10_000)]


def command_calls(client: redis.Redis) -> dict[str, int]:
    """Calls per command since the last ``CONFIG RESETSTAT`` (scripts' calls included)."""
    return {name.removeprefix("cmdstat_"): stats["calls"]
            for name, stats in client.info("commandstats").items()}


def stream_entries(client: redis.Redis, stream: str) -> list[list[tuple[str, str]]]:
    """Each entry's fields as (name, value) pairs, in the order Redis holds them."""
    return [list(fields.items()) for _, fields in client.xrange(stream)]


def issue(client: redis.Redis, plans: Sequence[tuple[str, str, int]],
          sets: Sequence[FieldSet] = (), *, maxlen: int = MAXLEN,
          stream: str = PERMIT_STREAM) -> list[object]:
    """Run issue_permits for ``plans`` = (plan id, entry id, set index), in the ARGV layout
    of the script's header: each set's names become a layout (sent once per distinct
    list of names), its values a set of that layout."""
    layouts = list(dict.fromkeys(tuple(name for name, _ in field_set) for field_set in sets))
    args: list[str | int] = [GROUP, TTL, maxlen, CONFIG_ID, len(CORE), *CORE, len(layouts)]
    for names in layouts:
        args += [len(names), *names]
    args.append(len(sets))
    for field_set in sets:
        names = tuple(name for name, _ in field_set)
        args += [layouts.index(names) + 1, *(value for _, value in field_set)]
    for plan_id, entry, index in plans:
        args += [entry, index, *core_values(plan_id)]
    keys = [stream, PLAN_STREAM, *(permit_key(plan_id) for plan_id, _, _ in plans)]
    return SCRIPTS["issue_permits"](client, keys, args)


@pytest.fixture
def small_stream_nodes(real_redis: redis.Redis) -> Iterator[None]:
    """Stream nodes of 10 entries, so approximate trimming (whole nodes) is predictable."""
    saved = real_redis.config_get("stream-node-max-*")
    real_redis.config_set("stream-node-max-entries", 10)
    real_redis.config_set("stream-node-max-bytes", 0)
    yield
    for name, value in saved.items():
        real_redis.config_set(name, value)


@pytest.fixture(scope="module")
def keysless_redis() -> Iterator[redis.Redis]:
    """A second redis-server whose KEYS command is renamed away (to the empty name)."""
    # start_redis passes its arguments to the process as a list (no shell): "" is an
    # empty argument, which redis-server reads as the empty name.
    server = start_redis(None, "--rename-command", "KEYS", "")
    client = server.client()
    yield client
    client.close()
    server.stop()


# -- issue_permits ----------------------------------------------------------------------


@pytest.mark.redis
def test_issue_writes_permit_announces_every_field_in_order_and_acks(real_redis):
    first, second = pending_plans(real_redis, 2)
    plugin = [("p31_efficiency", "0.8"), ("p31_reason", "ok")]

    replies = issue(real_redis, [("A", first, 1), ("B", second, 0)], [plugin])

    assert replies == [1, 1]
    a_fields = core_fields("A") + plugin + RECORD
    b_fields = core_fields("B") + RECORD
    assert list(real_redis.hgetall(permit_key("A")).items()) == a_fields
    assert list(real_redis.hgetall(permit_key("B")).items()) == b_fields
    for plan_id in "AB":
        assert TTL - 5 < real_redis.ttl(permit_key(plan_id)) <= TTL
    # The stream entry is the durable record: the permit's fields, in the same order.
    assert stream_entries(real_redis, PERMIT_STREAM) == [a_fields, b_fields]
    assert pending(real_redis) == []
    assert pending(real_redis, OTHER_GROUP) == [first, second]


@pytest.mark.redis
def test_issue_existing_permit_is_acknowledged_only(real_redis):
    first, second = pending_plans(real_redis, 2)
    # Unlike the plan's values, even in its first field: it must be left exactly as it is.
    existing = {"plan_id": "A (first delivery)", "decision": "DENY"}
    real_redis.hset(permit_key("A"), mapping=existing)

    replies = issue(real_redis, [("A", first, 0), ("B", second, 0)])

    assert replies == [0, 1]
    assert real_redis.hgetall(permit_key("A")) == existing
    assert real_redis.ttl(permit_key("A")) == -1
    assert stream_entries(real_redis, PERMIT_STREAM) == [core_fields("B") + RECORD]
    assert pending(real_redis) == []


@pytest.mark.redis
def test_issue_wrong_typed_permit_refuses_that_plan_only(real_redis):
    first, second, third = pending_plans(real_redis, 3)
    real_redis.set(permit_key("A"), "not a hash")
    real_redis.rpush(permit_key("C"), "not a hash")

    replies = issue(real_redis, [("A", first, 1), ("B", second, 1), ("C", third, 1)],
                    [[("p31_efficiency", "0.8")]])

    assert isinstance(replies[0], redis.ResponseError)
    wrongtype = "WRONGTYPE Operation against a key holding the wrong kind of value"
    assert str(replies[0]) == (f"{wrongtype} ({permit_key('A')} is a string, "
                               f"{PERMIT_STREAM} is a none)")
    assert replies[1] == 1
    assert isinstance(replies[2], redis.ResponseError)
    assert str(replies[2]) == (f"{wrongtype} ({permit_key('C')} is a list, "
                               f"{PERMIT_STREAM} is a stream)")
    assert real_redis.get(permit_key("A")) == "not a hash"
    assert real_redis.lrange(permit_key("C"), 0, -1) == ["not a hash"]
    assert stream_entries(real_redis, PERMIT_STREAM) == [
        [*core_fields("B"), ("p31_efficiency", "0.8"), *RECORD]]
    assert pending(real_redis) == [first, third]


@pytest.mark.redis
def test_issue_wrong_typed_permit_stream_refuses_every_plan(real_redis):
    first, second = pending_plans(real_redis, 2)
    real_redis.set(PERMIT_STREAM, "not a stream")

    replies = issue(real_redis, [("A", first, 0), ("B", second, 0)])

    assert [str(reply) for reply in replies] == [
        f"WRONGTYPE ({permit_key(plan_id)} is a none, {PERMIT_STREAM} is a string)"
        for plan_id in "AB"]
    assert all(isinstance(reply, redis.ResponseError) for reply in replies)
    assert real_redis.exists(permit_key("A"), permit_key("B")) == 0
    assert real_redis.get(PERMIT_STREAM) == "not a stream"
    assert pending(real_redis) == [first, second]


@pytest.mark.redis
def test_issue_several_field_sets_and_set_zero(real_redis):
    entries = pending_plans(real_redis, 4)
    small = [("a", "1")]
    large = [("b", "2"), ("c", "3"), ("d", "4")]
    plans = [("P", entries[0], 2), ("Q", entries[1], 0), ("R", entries[2], 1),
             ("S", entries[3], 2)]

    assert issue(real_redis, plans, [small, large]) == [1, 1, 1, 1]

    expected = {"P": large, "Q": [], "R": small, "S": large}
    for plan_id, extra in expected.items():
        assert list(real_redis.hgetall(permit_key(plan_id)).items()) == (
            core_fields(plan_id) + extra + RECORD)
    assert stream_entries(real_redis, PERMIT_STREAM) == [
        core_fields(plan_id) + extra + RECORD for plan_id, extra in expected.items()]
    assert pending(real_redis) == []


@pytest.mark.redis
def test_issue_sets_of_one_layout_around_plans_without_plugin_fields(real_redis):
    # Two sets share their names (one layout): sent once, and put back in place after a
    # plan without plugin fields, whose config_id took their place.
    entries = pending_plans(real_redis, 5)
    low = [("eff_factor", "0.4444"), ("eff_reason", "ok")]
    high = [("eff_factor", "1.0000"), ("eff_reason", "ok")]
    other = [("x", "1"), ("y", "2"), ("z", "3")]
    plans = [("P", entries[0], 1), ("Q", entries[1], 0), ("R", entries[2], 2),
             ("S", entries[3], 3), ("T", entries[4], 1)]

    assert issue(real_redis, plans, [low, high, other]) == [1] * 5

    expected = {"P": low, "Q": [], "R": high, "S": other, "T": low}
    records = [core_fields(plan_id) + extra + RECORD for plan_id, extra in expected.items()]
    assert stream_entries(real_redis, PERMIT_STREAM) == records
    for plan_id, record in zip(expected, records, strict=True):
        assert list(real_redis.hgetall(permit_key(plan_id)).items()) == record


@pytest.mark.redis
def test_issue_trims_the_permit_stream_approximately(real_redis, small_stream_nodes):
    entries = pending_plans(real_redis, 25)
    plans = [(f"P{n}", entry, 0) for n, entry in enumerate(entries)]

    assert issue(real_redis, plans, maxlen=1) == [1] * 25

    # MAXLEN ~ drops whole nodes of 10 entries: trimmed, but not down to exactly 1.
    assert 1 < real_redis.xlen(PERMIT_STREAM) < 25
    assert pending(real_redis) == []


# -- dead_letter ------------------------------------------------------------------------


def dead_letter(client: redis.Redis, entry: str, fields: Sequence[str], *,
                maxlen: int = MAXLEN) -> object:
    return SCRIPTS["dead_letter"](client, [DEAD_STREAM, PLAN_STREAM],
                                  [GROUP, entry, maxlen, *fields])


@pytest.mark.redis
def test_dead_letter_appends_and_acknowledges_the_plan(real_redis):
    first, second = pending_plans(real_redis, 2)
    fields = ["error", "bad side", "error_code", "invalid_side", "source_id", first,
              "side", "SIDEWAYS"]

    assert dead_letter(real_redis, first, fields) == 1

    assert stream_entries(real_redis, DEAD_STREAM) == [list(zip(fields[::2], fields[1::2],
                                                                 strict=True))]
    assert pending(real_redis) == [second]
    assert pending(real_redis, OTHER_GROUP) == [first, second]


@pytest.mark.redis
def test_dead_letter_trims_approximately(real_redis, small_stream_nodes):
    entries = pending_plans(real_redis, 25)

    for entry in entries:
        assert dead_letter(real_redis, entry, ["error", "x"], maxlen=1) == 1

    assert 1 < real_redis.xlen(DEAD_STREAM) < 25
    assert pending(real_redis) == []


@pytest.mark.redis
def test_dead_letter_on_a_wrong_typed_stream_fails_and_leaves_the_plan(real_redis):
    (entry,) = pending_plans(real_redis, 1)
    real_redis.set(DEAD_STREAM, "not a stream")

    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        dead_letter(real_redis, entry, ["error", "x"])

    assert pending(real_redis) == [entry]


# -- list_keys --------------------------------------------------------------------------

BUDGET_PATTERN = "quantum:portfolio:budget:*"


def fill_keyspace(client: redis.Redis, count: int) -> list[str]:
    """``count`` budget keys of mixed types among as many other keys; the budget keys."""
    budgets = [f"quantum:portfolio:budget:S{n:04d}" for n in range(count)]
    pipe = client.pipeline(transaction=False)
    for n, key in enumerate(budgets):
        if n % 2:
            pipe.hset(key, "budget_usd", "1")
        else:
            pipe.set(key, "1")
        pipe.set(f"quantum:allocation:target:S{n:04d}", "1")
    pipe.set("quantum:portfolio:budgetX", "1")  # no ':' after "budget": no match
    pipe.execute()
    return budgets


@pytest.mark.redis
def test_list_keys_lists_the_matching_keys(real_redis):
    budgets = fill_keyspace(real_redis, 20)
    SCRIPTS.load(real_redis)
    real_redis.config_resetstat()

    listed = SCRIPTS["list_keys"](real_redis, [], [BUDGET_PATTERN, 1000])

    assert sorted(listed) == budgets
    calls = command_calls(real_redis)
    assert calls["keys"] == 1 and "scan" not in calls  # one pass, where KEYS exists


@pytest.mark.redis
def test_list_keys_scans_when_keys_is_renamed_away(keysless_redis):
    keysless_redis.flushall()
    with pytest.raises(redis.ResponseError, match="unknown command"):
        keysless_redis.keys("*")
    budgets = fill_keyspace(keysless_redis, 300)

    keysless_redis.config_resetstat()

    # COUNT 7: dozens of SCAN pages, all of them joined.
    listed = SCRIPTS["list_keys"](keysless_redis, [], [BUDGET_PATTERN, 7])

    assert sorted(listed) == budgets
    assert command_calls(keysless_redis)["scan"] > 20


# -- the registry -----------------------------------------------------------------------

LUA_FILES = sorted(LUA_DIR.glob("*.lua"))
INDEXED = re.compile(r"\b(KEYS|ARGV)\[(\d+)\]")


def test_the_registry_holds_every_lua_file_by_stem_sorted():
    assert [path.stem for path in LUA_FILES] == ["dead_letter", "issue_permits", "list_keys"]
    assert [script.name for script in SCRIPTS] == [path.stem for path in LUA_FILES]
    for path in LUA_FILES:
        assert SCRIPTS[path.stem].source == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("path", LUA_FILES, ids=lambda path: path.name)
def test_every_script_opens_with_a_header_documenting_keys_argv_and_reply(path):
    text = path.read_text(encoding="utf-8")
    assert text.isascii()
    assert text.startswith("--[[\n"), "the header opens the file"
    header, body = text[len("--[[\n"):].split("\n]]\n", 1)
    lines = [line.strip() for line in header.splitlines()]
    assert "Input:" in lines and "Output:" in lines
    inputs = "\n".join(lines[lines.index("Input:") + 1:lines.index("Output:")])
    assert re.search(r"^(KEYS\[\d|ARGV\[\d|no KEYS)", inputs, re.MULTILINE)
    assert lines[lines.index("Output:") + 1], "the reply is described"
    # Every KEYS[n] / ARGV[n] the script reads is documented in its Input section.
    assert set(INDEXED.findall(body)) <= set(INDEXED.findall(inputs))


@pytest.mark.redis
def test_sha_is_what_script_load_answers(real_redis):
    for script in SCRIPTS:
        assert real_redis.script_load(script.source) == script.sha
        assert SCRIPTS.by_sha(script.sha) is script
    assert SCRIPTS.by_sha("0" * 40) is None


@pytest.mark.redis
def test_calling_a_script_recovers_after_script_flush(real_redis):
    script = SCRIPTS["list_keys"]
    real_redis.set("k:1", "x")
    real_redis.script_flush()

    assert script(real_redis, [], ["k:*", 10]) == ["k:1"]  # never loaded
    assert real_redis.script_exists(script.sha) == [True]
    real_redis.script_flush()
    assert script(real_redis, [], ["k:*", 10]) == ["k:1"]  # flushed after use
    assert script(real_redis, [], ["k:*", 10]) == ["k:1"]  # loaded


@pytest.mark.redis
def test_calling_a_script_raises_other_errors_at_once(real_redis):
    (entry,) = pending_plans(real_redis, 1)
    real_redis.set(DEAD_STREAM, "not a stream")
    SCRIPTS.load(real_redis)
    real_redis.config_resetstat()

    with pytest.raises(redis.ResponseError, match="WRONGTYPE") as raised:
        dead_letter(real_redis, entry, ["error", "x"])

    assert not is_noscript(raised.value)
    calls = command_calls(real_redis)
    assert calls["evalsha"] == 1 and "script|load" not in calls


@pytest.mark.redis
def test_load_then_evalsha_runs_every_script(real_redis):
    real_redis.script_flush()
    shas = [script.sha for script in SCRIPTS]
    assert real_redis.script_exists(*shas) == [False] * len(shas)

    SCRIPTS.load(real_redis)

    assert real_redis.script_exists(*shas) == [True] * len(shas)
    real_redis.set("k:1", "x")
    command = SCRIPTS["list_keys"].command([], ["k:*", 10])
    assert real_redis.execute_command(*command) == ["k:1"]


def test_command_is_evalsha_with_every_argument_a_string():
    script = SCRIPTS["dead_letter"]

    assert script.command(["a", "b"], ["g", 5, "x"]) == (
        "EVALSHA", script.sha, "2", "a", "b", "g", "5", "x")
    assert script.command([], []) == ("EVALSHA", script.sha, "0")


@pytest.mark.redis
def test_is_noscript_on_real_replies(real_redis):
    real_redis.script_flush()
    script = SCRIPTS["list_keys"]
    with pytest.raises(redis.ResponseError) as raised:
        real_redis.execute_command(*script.command([], ["*", 10]))
    assert is_noscript(raised.value)

    pipe = real_redis.pipeline(transaction=False)
    pipe.execute_command(*script.command([], ["*", 10]))
    pipe.set("k:1", 1)
    pipe.hset("k:1", "a", "b")
    noscript, ok, wrongtype = pipe.execute(raise_on_error=False)
    assert is_noscript(noscript)
    assert not is_noscript(ok)
    assert not is_noscript(wrongtype)


@pytest.mark.parametrize(("reply", "expected"), [
    (redis.exceptions.NoScriptError("No matching script."), True),
    (redis.ResponseError("NOSCRIPT No matching script. Please use EVAL."), True),
    (redis.ResponseError("WRONGTYPE Operation against a key holding the wrong kind"), False),
    (redis.ResponseError("ERR unknown NOSCRIPT"), False),
    ("NOSCRIPT No matching script.", False),
    (None, False),
])
def test_is_noscript(reply, expected):
    assert is_noscript(reply) is expected


def test_an_unknown_name_raises_naming_the_scripts_there_are():
    with pytest.raises(KeyError, match="issue_permits"):
        SCRIPTS["issue_permit"]


def test_a_registry_reads_its_package_once(tmp_path, monkeypatch):
    package = tmp_path / "qg_test_lua"
    package.mkdir()
    (package / "b.lua").write_text("return 2\n")
    (package / "a.lua").write_text("return 1\n")
    (package / "notes.txt").write_text("not a script\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    registry = ScriptRegistry("qg_test_lua")
    (package / "a.lua").write_text("return 3\n")

    assert list(registry) == [Script.from_source("a", "return 1\n"),
                              Script.from_source("b", "return 2\n")]
    assert registry["a"].sha == "48df9b519ca145c867b895f740b37bd891e887af"  # sha1 of it


@pytest.mark.redis
def test_issue_reports_redis_own_refusal_not_a_type_error(real_redis):
    """Under OOM the script's write is refused by Redis: the reply carries Redis's own
    message (OOM …), never a WRONGTYPE label of ours (issue 14, item 4)."""
    (first,) = pending_plans(real_redis, 1)
    real_redis.config_set("maxmemory", "1")
    try:
        replies = issue(real_redis, [("A", first, 0)], [])
    finally:
        real_redis.config_set("maxmemory", "0")
    reply = replies[0] if isinstance(replies, list) else replies
    # redis-py maps the OOM prefix to its class (and drops it from the message)
    assert isinstance(reply, redis.exceptions.OutOfMemoryError), reply
    assert redis_message(reply).startswith("OOM command not allowed"), redis_message(reply)
    assert "WRONGTYPE" not in str(reply)
    assert real_redis.exists(permit_key("A")) == 0
