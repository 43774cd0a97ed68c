"""The governor's writes: permits through ``issue_permits.lua``, dead letters through
``dead_letter.lua``, encoded as RESP (pure; sending is the batch's business).

Each call of the issue script writes :data:`WRITE_CHUNK` permits: it skips a plan whose
permit already exists, writes the permit hash (core fields, plugin fields and
``config_id``) with its TTL, appends the same fields to the capped
``quantum:stream:permit.issued`` (the durable decision record of SPEC 8) and acknowledges
the plan, atomically (the script's header in ``governor_core/lua`` is the contract).
So a plan is acknowledged only once its permit exists, a plan delivered twice gets exactly
one permit, and a crash at any point loses nothing. Dead letters are written the same way
(append + acknowledge, atomically).

The chunk's text is spliced: the arguments that are the same for every call (script,
streams, group, TTL, ``config_id``, the core field names) are encoded once; per call, each
distinct list of plugin field names (a *layout*: one per plugin set-up, in practice) once
and each distinct set of plugin values once (a plan's :class:`PluginFields` object, which
the extensions share between the plans of a symbol and keep between batches, with its
values already in RESP); and per plan its key and its row (entry id, set index and core
values: one generated f-string, :func:`~governor_core.templates.column_splicer`). Every
count is derived from :data:`~governor_core.governor.gates.CORE_FIELDS` and the
arguments themselves, so adding a core field is a one-tuple edit.

Why layouts: over 1,000 symbols nearly every plan of a chunk has values of its own (the
hint depends on the symbol's score), so sets hardly repeat, and sending each set's names
again was most of the plugin's arguments for the script to turn into Lua strings. Measured
over 1,000 symbols, each with a hint of its own (CPU per plan, P3.1 active minus blocked,
shared 2-core machine): Python +10 µs and Redis +4.6 µs before, with the stream entry
carrying the core fields only; Python +4.6 µs and Redis +4.6 µs with layouts and the
extensions' encodings kept between batches, the stream entry carrying every field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from governor_core.governor.config import GovernorConfig
from governor_core.governor.drafting import PermitDraft
from governor_core.governor.gates import CORE_FIELDS
from governor_core.keys import DEAD_STREAM, PERMIT_PREFIX, PERMIT_STREAM, PLAN_STREAM
from governor_core.plans import PlanRejection
from governor_core.redis_io import Command
from governor_core.scripts import SCRIPTS
from governor_core.templates import column_splicer
from governor_core.wire import Packed, bulk

#: Plans drafted per write sent: small enough that Redis starts early, large enough that
#: each send is one syscall for many commands.
WRITE_CHUNK = 50
#: Encoded layouts (lists of plugin field names) kept between calls; there is one per
#: set-up of the plugins in practice, so only a plugin naming fields at random fills it.
MAX_LAYOUTS = 64
#: A plan's row of the issue call: its entry id, its set number (already RESP), its core
#: values in CORE_FIELDS order.
_ROWS = column_splicer(("value", "text", *["value"] * len(CORE_FIELDS)))
#: Dead-letter fields that come before the plan's own (an original field of the same name
#: is kept as ``orig_<name>``).
DEAD_LETTER_HEAD = ("error", "error_code", "source_id")


class PermitWriter:
    """Encodes a batch's writes for one governor configuration; ``config_id`` names its
    snapshot (:mod:`governor_core.snapshot`) on every permit."""

    def __init__(self, config: GovernorConfig, config_id: str = "") -> None:
        self.group = config.group
        self.maxlen = str(config.stream_maxlen)
        issue = SCRIPTS["issue_permits"]
        self._dead_letter = SCRIPTS["dead_letter"]
        # EVALSHA sha numkeys | permit stream, plan stream, permit keys… | group, ttl,
        # maxlen, config_id, ncore, core names…, nlayouts, layouts…, nsets, sets… | per
        # plan: entry, set, core values…
        head = ("EVALSHA", issue.sha)
        streams = (PERMIT_STREAM, PLAN_STREAM)
        limits = (config.group, str(config.permit_ttl_sec), self.maxlen, config_id,
                  str(len(CORE_FIELDS)), *CORE_FIELDS)
        self._head = "".join(map(bulk, head))
        self._streams = "".join(map(bulk, streams))
        self._limits = "".join(map(bulk, limits))
        # Everything but the permit keys, the layouts, the sets and the per-plan rows
        # (+1: numkeys, +1: nlayouts, +1: nsets).
        self._fixed_args = len(head) + 1 + len(streams) + len(limits) + 2
        self._row_args = 2 + len(CORE_FIELDS)
        # Every count and index a call names (numkeys = 2 + plans at most), encoded once.
        self._numbers = [bulk(str(number)) for number in range(WRITE_CHUNK + 3)]
        self._layout_texts: dict[tuple[str, ...], str] = {}  # names -> count and names

    def _layout_text(self, names: tuple[str, ...]) -> str:
        text = self._layout_texts.get(names)
        if text is None:
            if len(self._layout_texts) >= MAX_LAYOUTS:
                self._layout_texts.clear()
            text = self._layout_texts[names] = bulk(str(len(names))) + "".join(
                map(bulk, names))
        return text

    def issue(self, drafts: Sequence[PermitDraft]) -> Packed:
        """One script call writing ``drafts`` (at most :data:`WRITE_CHUNK`).

        Plan ids, entry ids and core values are ASCII (validated plans, formatted numbers,
        fixed codes), so character counts are byte counts; plugin fields are encoded by
        :func:`~governor_core.wire.bulk`, which counts bytes. Each plan's row (entry id,
        set number, core values) is one generated f-string over the chunk's columns.
        """
        numbers = self._numbers
        zero = numbers[0]
        layouts: dict[tuple[str, ...], str] = {}  # names -> the layout's number, as RESP
        layout_texts: list[str] = []
        # id(a plan's PluginFields) -> its set's number, as RESP (the drafts hold them)
        sets: dict[int, str] = {}
        set_texts: list[str] = []
        extra_args = 0
        row_sets = []
        for draft in drafts:
            extra = draft.extra
            names = extra.names
            if not names:
                row_sets.append(zero)
                continue
            number = sets.get(id(extra))
            if number is None:
                number = sets[id(extra)] = numbers[len(sets) + 1]
                layout = layouts.get(names)
                if layout is None:
                    layout = layouts[names] = numbers[len(layouts) + 1]
                    layout_texts.append(self._layout_text(names))
                set_texts.append(layout + extra.values)
                extra_args += 1 + len(names)
            row_sets.append(number)
        extra_args += sum(1 + len(names) for names in layouts)
        count = len(drafts)
        keys = [f"${len(key)}\r\n{key}\r\n"
                for key in [PERMIT_PREFIX + draft.plan.plan_id for draft in drafts]]
        rows = _ROWS([draft.plan.entry_id for draft in drafts], row_sets,
                     *zip(*[draft.permit.values() for draft in drafts], strict=True))
        args = self._fixed_args + count + extra_args + self._row_args * count
        text = (f"*{args}\r\n{self._head}{numbers[2 + count]}{self._streams}"
                f"{''.join(keys)}{self._limits}{numbers[len(layouts)]}"
                f"{''.join(layout_texts)}{numbers[len(sets)]}{''.join(set_texts)}"
                f"{''.join(rows)}")
        return Packed(text.encode())

    def dead_letter(self, rejection: PlanRejection) -> Command:
        return self.dead_letter_command(rejection.entry_id, rejection.code, rejection.message,
                                        rejection.fields)

    def dead_letter_command(self, entry_id: str, code: str, message: str,
                            original: Mapping[str, str]) -> Command:
        """Append the plan to the dead-letter stream with its error, and acknowledge it."""
        return self._dead_letter.command(
            (DEAD_STREAM, PLAN_STREAM),
            (self.group, entry_id, self.maxlen,
             *dead_letter_fields(entry_id, code, message, original)))

    def acknowledge(self, entry_ids: Sequence[str]) -> Command:
        return ("XACK", PLAN_STREAM, self.group, *entry_ids)


def chunk_sizes(plans: int) -> list[int]:
    """How many plans each issue call of a batch of ``plans`` carries."""
    return [min(WRITE_CHUNK, plans - start) for start in range(0, plans, WRITE_CHUNK)]


def plan_results(replies: Sequence[object], sizes: Sequence[int]) -> list[object]:
    """Each plan's result from the issue calls' replies: 1, 0 or an error. A call Redis
    refused as a whole (e.g. out of memory) gives its error to each of its plans."""
    results: list[object] = []
    for reply, size in zip(replies, sizes, strict=True):
        results.extend(reply if isinstance(reply, list) and len(reply) == size
                       else [reply] * size)
    return results


def dead_letter_fields(entry_id: str, code: str, message: str,
                       original: Mapping[str, str]) -> list[str]:
    """:data:`DEAD_LETTER_HEAD` first, then the plan's original fields."""
    flat = [DEAD_LETTER_HEAD[0], message, DEAD_LETTER_HEAD[1], code,
            DEAD_LETTER_HEAD[2], entry_id]
    for name, value in dict(original).items():
        flat.extend((f"orig_{name}" if name in DEAD_LETTER_HEAD else name, value))
    return flat
