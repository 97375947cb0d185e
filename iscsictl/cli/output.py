"""Text and JSON rendering for the CLI: nothing but formatting and writing."""

from __future__ import annotations

import codecs
import errno
import itertools
import os
import sys
from typing import Iterable

#: the error handler :class:`Output` gives the real stdout and stderr
LENIENT = "iscsictl-lenient"


def _lenient(exc: UnicodeError) -> tuple[str | bytes, int]:
    """Encode what the stream's encoding cannot, one character at a time: a byte that
    ``os.fsdecode`` kept as a lone surrogate (a file name not in UTF-8) as that byte again,
    as iscsiadm prints names; any other character as a ``\\x``/``\\u`` escape."""
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    c = exc.object[exc.start]
    if "\udc80" <= c <= "\udcff":
        return bytes([ord(c) - 0xDC00]), exc.start + 1
    return ascii(c)[1:-1], exc.start + 1


codecs.register_error(LENIENT, _lenient)


def _lenient_stream(stream):  # type: ignore[no-untyped-def]
    """``stream`` set to :data:`LENIENT` errors if it would fail on them (a UTF-8 locale's
    strict stdout), or write a file name's bytes as ``\\udcff`` (stderr's
    backslashreplace): a name the encoding cannot write must not end a command half done,
    and is written as its bytes on both streams."""
    try:
        if stream.errors in ("strict", "backslashreplace"):
            stream.reconfigure(errors=LENIENT)
    except (AttributeError, ValueError, OSError):
        pass
    return stream


class OutputError(OSError):
    """The results could not be written (stdout full, gone, or failing): the command's
    own outcome is then unknown to its caller, and the CLI says so on stderr (exit 1)."""


def _standard(stream):  # type: ignore[no-untyped-def]
    """``sys.stdout``/``sys.stderr`` as a command writes to them: /dev/null when the
    process was started with that descriptor closed (Python then has None there), as a
    C program's writes to a closed descriptor go nowhere."""
    if stream is None:
        return open(os.devnull, "w")  # noqa: SIM115: the process's own, for its lifetime
    return _lenient_stream(stream)


class Output:
    """Writes results to ``out`` (stdout) and diagnostics to ``err`` (stderr, ``iscsictl: ``
    prefix, as iscsiadm's log_error/log_warning).  ``json`` selects JSON results.

    A result that cannot be written raises :class:`OutputError`; a diagnostic that cannot
    be written is dropped (a closed or full stderr never changes a command's exit code)."""

    PREFIX = "iscsictl: "

    def __init__(self, out=None, err=None, json: bool = False):
        self.out = out or _standard(sys.stdout)
        self.err = err or _standard(sys.stderr)
        self.json = json
        self.written = False  # whether a result reached ``out``

    def _write(self, text: str) -> None:
        self.written = True
        try:
            self.out.write(text)
        except BrokenPipeError:
            raise  # the reader went away: main() exits quietly
        except (OSError, ValueError) as e:  # ValueError: the stream was closed
            raise OutputError(getattr(e, "errno", None) or errno.EIO,
                              getattr(e, "strerror", None) or str(e)) from None

    def lines(self, lines: Iterable[str]) -> None:
        """Write text lines (each newline-terminated), a few thousand at a time: however
        many lines an iterator yields, they are never all held at once."""
        it = iter(lines)
        while chunk := list(itertools.islice(it, 4096)):
            if text := "\n".join(chunk):
                self._write(text + "\n")

    def text(self, text: str) -> None:
        """Write text as is (already newline-terminated)."""
        self._write(text)

    def error(self, msg: str) -> None:
        """One diagnostic line on stderr (dropped if stderr cannot take it)."""
        try:
            self.err.write(self.PREFIX + msg + "\n")
        except (OSError, ValueError):
            pass

    warn = error

    def debug(self, text: str, source: str = "iscsictl") -> None:
        """A debug message (``-d``) on stderr, each of its lines after ``source: ``
        (``iscsictld`` for the daemon's); dropped if stderr cannot take it."""
        try:
            self.err.write("".join(f"{source}: {line}\n" for line in text.split("\n")))
        except (OSError, ValueError):
            pass

    def emit_json(self, obj) -> None:
        import json
        self._write(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")

    def emit_json_array(self, items: Iterable) -> int:
        """Write ``items`` as the JSON array :meth:`emit_json` writes of their list, one
        item at a time (16000 node records were one 610 MiB document); how many.  Nothing
        is written for none (the caller says what none means)."""
        import json
        n = 0
        for item in items:
            text = json.dumps(item, indent=2, sort_keys=False, default=str)
            self._write(("[\n  " if n == 0 else ",\n  ") + text.replace("\n", "\n  "))
            n += 1
        if n:
            self._write("\n]\n")
        return n


def node_json(nid) -> dict:
    """A NodeID as JSON: target, address, port, tpgt, iface, portal (``ip:port``)."""
    return {"target": nid.target, "address": nid.address, "port": nid.port,
            "tpgt": nid.listed_tpgt, "iface": nid.iface, "portal": nid.portal}


def record_json(rec, show_secrets: bool = False) -> dict:
    """A Record as a ``{key: text}`` dict in file order, masked like ``-o show`` unless
    ``show_secrets``; hidden keys omitted, empty values as ``""``."""
    out = {}
    for k in rec.kind.keys:
        if k.hidden or k.name not in rec.values:
            continue
        v = rec.values[k.name]
        s = ",".join(v) if k.type == "list" else str(v)
        if k.secret and s and not show_secrets:
            s = "********"
        out[k.name] = s
    return out


def tree_lines(nids, portal_once: bool = False) -> list[str]:  # type: ignore[no-untyped-def]
    """``-P 1`` tree of NodeIDs (the DB's iscsiadm format; ``portal_once``: a
    discovery's, :func:`~iscsictl.db.record.format_node_tree`)."""
    from ..db.record import format_node_tree

    return format_node_tree(nids, portal_once)


def human_size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, div in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n} B"


def probe_lines(res) -> list[str]:
    """A readable table of a ProbeResult."""
    out = [f"Target: {res.target}", f"Portal: {res.portal}", f"TSIH: {res.tsih}",
           "Negotiated: " + ", ".join(f"{k}={v}" for k, v in sorted(res.negotiated.items())
                                      if k in ("HeaderDigest", "DataDigest",
                                               "MaxRecvDataSegmentLength",
                                               "MaxBurstLength", "FirstBurstLength")), ""]
    rows = [("LUN", "Type", "Vendor", "Product", "Rev", "Serial", "Size", "Blocks x Size")]
    for lun in res.luns:
        bs = f"{lun.blocks} x {lun.block_size}" if lun.blocks is not None else "-"
        rows.append((str(lun.lun), lun.device_type or "-", lun.vendor or "-",
                     lun.product or "-", lun.revision or "-", lun.serial or "-",
                     human_size(lun.size_bytes), bs))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        out.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    for lun in res.luns:
        for d in lun.designators:
            out.append(f"LUN {lun.lun} id: {d}")
        for what, msg in lun.errors.items():
            out.append(f"LUN {lun.lun} {what}: {msg}")
    return out
