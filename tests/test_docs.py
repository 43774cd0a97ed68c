"""docs/schema.md names every key of governor_core/keys.py and every field the services
write, so the schema a clone carries cannot fall behind the code unnoticed."""

from __future__ import annotations

from pathlib import Path

import pytest
from p29_shadow.formula import PROPOSAL_FIELDS
from p31_efficiency.formula import PERMIT_FIELDS

from governor_core import keys
from governor_core.allocation.publish import DECISION_FIELDS, TARGET_FIELDS
from governor_core.governor.gates import CORE_FIELDS
from governor_core.governor.writer import DEAD_LETTER_HEAD

SCHEMA = (Path(__file__).resolve().parent.parent / "docs" / "schema.md").read_text()
KEYS = {name: value for name, value in vars(keys).items() if name.isupper()}
FIELDS = sorted({*CORE_FIELDS, *PERMIT_FIELDS, *TARGET_FIELDS, *DECISION_FIELDS,
                 *PROPOSAL_FIELDS, *DEAD_LETTER_HEAD, "last_update_ts_epoch"})


@pytest.mark.parametrize("name", sorted(KEYS))
def test_every_key_is_described(name: str) -> None:
    value = KEYS[name]
    shown = f"`{value}" if value.endswith(":") else f"`{value}`"
    assert shown in SCHEMA, f"docs/schema.md does not describe {name} = {value!r}"


@pytest.mark.parametrize("field", FIELDS)
def test_every_written_field_is_described(field: str) -> None:
    assert f"`{field}`" in SCHEMA, f"docs/schema.md does not name the field {field!r}"
