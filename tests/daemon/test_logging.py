"""iscsictld's log lines: rendered when made, written by the writer thread."""

import io
import logging
import logging.handlers
import queue

from iscsictl.daemon.__main__ import LineQueueHandler
from iscsictl.protocol.trace import ESCAPED


def _written(make_records) -> str:
    """What iscsictld's writer thread writes (``iscsictld: <message>``) of the records
    ``make_records(log)`` makes through a LineQueueHandler, the writer started after."""
    out = io.StringIO()
    sink = logging.StreamHandler(out)
    sink.setFormatter(logging.Formatter("iscsictld: %(message)s"))
    q = queue.SimpleQueue()
    writer = logging.handlers.QueueListener(q, sink)
    log = logging.getLogger("iscsictld-test")
    log.propagate = False
    log.setLevel(logging.INFO)
    handler = LineQueueHandler(q)
    log.addHandler(handler)
    try:
        make_records(log)
        writer.start()
    finally:
        writer.stop()
        log.removeHandler(handler)
    return out.getvalue()


def test_a_line_is_rendered_when_made_and_a_traceback_by_the_writer():
    def records(log):
        names = ["iqn.2003-01.org.example:t"]
        log.info("session %d: %s", 3, names)
        names.append("changed after the call")  # the line shows the arguments at the call
        try:
            raise ValueError("bad PDU")
        except ValueError:
            log.exception("IPC request failed")
    lines = _written(records).splitlines()
    assert lines[0] == "iscsictld: session 3: ['iqn.2003-01.org.example:t']"
    assert lines[1] == "iscsictld: IPC request failed"
    assert lines[2] == "Traceback (most recent call last):" and lines[-1] == "ValueError: bad PDU"


def test_a_newline_in_a_value_forges_no_line():
    """A target name a root client sent in a login record (the IPC does not check names) is
    written with its control characters escaped: one line, which cannot pass for another."""
    def records(log):
        log.warning("%s: login failed", "iqn.x:t\niscsictld: session 9 logged out\x1b[2K\tok")
        log.warning("%s", "<- Text Response\n    TargetAlias=a\\nb", extra=ESCAPED)  # a trace
    assert _written(records) == ("iscsictld: iqn.x:t\\niscsictld: session 9 logged out"
                                 "\\x1b[2K\tok: login failed\n"
                                 "iscsictld: <- Text Response\n    TargetAlias=a\\nb\n")
