"""The efficiency reader's memory of parsed texts stays bounded by the symbols it reads,
however often the producers rewrite ``ts`` (issue 14, item 8), and never changes a
reading."""

from __future__ import annotations

from governor_core.efficiency import EfficiencyReader, read_efficiency_values

NOW = 1_700_000_000.0
SYMBOLS = [f"S{i:04d}USDT" for i in range(200)]


def hashes(second: int) -> list[list[str | None]]:
    """Every symbol's HMGET reply at ``second``: its ``ts`` rewritten each second."""
    return [[f"{(i % 97) / 100:.4f}", "0.9000", f"{NOW + second + i / 1000:.3f}"]
            for i, _ in enumerate(SYMBOLS)]


def expected(replies: list[list[str | None]], now: float) -> list[object]:
    return [read_efficiency_values(*reply, now, 0.65, 600.0) for reply in replies]


def test_memory_stays_bounded_by_the_symbols_when_ts_is_rewritten_every_second() -> None:
    reader = EfficiencyReader(min_conf=0.65, stale_sec=600.0)
    for second in range(300):  # 60,000 distinct texts in all
        replies = hashes(second)
        for batch in range(3):  # three governor batches in each second
            reader.commands(SYMBOLS)
            now = NOW + second + batch / 3
            assert reader.judge([list(reply) for reply in replies], now) == expected(
                replies, now)
        assert reader.remembered <= len(SYMBOLS)
    assert reader.remembered == len(SYMBOLS)


def test_a_reused_reply_list_is_parsed_again_and_the_bound_holds_past_max_entries() -> None:
    reader = EfficiencyReader(min_conf=0.65, stale_sec=600.0, max_entries=50)
    reply = ["0.2000", "0.9000", f"{NOW:.3f}"]
    reader.commands(["BTCUSDT"])
    assert reader.judge([reply], NOW)[0].score == 0.2
    reply[0] = "0.3000"  # the same list object, new texts: never a remembered reading
    assert reader.judge([reply], NOW)[0].score == 0.3
    for second in range(20):
        replies = hashes(second)
        reader.commands(SYMBOLS)
        assert reader.judge(replies, NOW + second) == expected(replies, NOW + second)
        assert reader.remembered <= 50
