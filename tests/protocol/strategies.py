"""Hypothesis strategies for typed PDUs: every field within its width.

The widths come from the RFC figures as the LAYOUT tables transcribe them
(checked byte by byte against hand-written bytes in test_golden.py); values
the RFC reserves (CSG/NSG 2, T+C, F+C, S without F) are steered clear of here
and tested as hostile input elsewhere.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from iscsictl.protocol import pdu as P

#: settings for property tests that use the (function-scoped) ``impl`` fixture
PROPERTY = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def _field_strategy(f):
    if f.kind is bool:
        return st.booleans()
    if f.kind is bytes:
        return st.binary(min_size=f.size, max_size=f.size)
    if f.mask:
        shift = (f.mask & -f.mask).bit_length() - 1
        return st.integers(0, f.mask >> shift)
    return st.integers(0, (1 << (8 * f.size)) - 1)


ahs_entries = st.lists(
    st.builds(P.AHS, st.integers(3, 63), st.binary(min_size=0, max_size=21)), max_size=3
)
data_segments = st.binary(min_size=0, max_size=67)  # every padding length


@st.composite
def pdus(draw, cls=None):
    """A typed PDU of ``cls`` (any class when None) with non-default values."""
    if cls is None:
        cls = draw(st.sampled_from(sorted(P.PDU_CLASSES.values(), key=lambda c: c.OPCODE)))
    values = {f.name: draw(_field_strategy(f)) for f in cls.LAYOUT}
    if cls in (P.LoginRequest, P.LoginResponse):
        values["csg"] = draw(st.sampled_from([0, 1, 3]))
        values["nsg"] = draw(st.sampled_from([0, 1, 3]))
        if values["transit"]:
            values["continue_"] = False
    if cls in (P.TextRequest, P.TextResponse) and values["final"]:
        values["continue_"] = False
    if cls is P.SCSIDataIn and values["status_present"]:
        values["final"] = True
    if cls is P.SCSICommand:
        values["cdb"] = draw(st.binary(min_size=16, max_size=16 + 4 * 30))
        values["expected_bidi_read_length"] = draw(
            st.none() | st.integers(0, 0xFFFFFFFF))
    if cls.AHS_ALLOWED:
        values["ahs"] = tuple(draw(ahs_entries))
    if cls.DATA_ALLOWED:
        values["data"] = draw(data_segments)
    return cls(**values)
