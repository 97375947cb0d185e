"""Login and logout through iscsictld, with iscsiadm's messages and exit codes.

Used by ``-m node -l/-u/-L/-U`` and ``-m session -u``.  The CLI resolves the
node records (it owns the DB); the daemon owns the kernel.  Messages follow
open-iscsi 2.1.8 (usr/session_mgmt.c): progress on stdout, failures on stderr
with the ``iscsictl: `` prefix and ``initiator reported error (N - text)``.
The exit code is the first failure's ISCSI_ERR_* number.
"""

from __future__ import annotations

from typing import Any, Callable

from . import errors as E

SESS_EXISTS = E.BY_NAME["ISCSI_ERR_SESS_EXISTS"]


def daemon_client():
    """A client of iscsictld's IPC socket."""
    from ..ipc import DaemonClient

    return DaemonClient()  # waits while the daemon works (its keep-alive lines)


def _daemon_error(exc) -> E.CliError:  # type: ignore[no-untyped-def]
    return E.CliError(str(exc), exc.code)


def _progress(o, verb: str, total: int):  # type: ignore[no-untyped-def]
    """A one-line progress display on a terminal for bulk operations, else None."""
    err = o.err
    if total < 2 or o.json or not getattr(err, "isatty", lambda: False)():
        return None

    def show(ev: dict[str, Any]) -> None:
        done = ev.get("done", 0)
        failed = show.failed = show.failed + (0 if ev.get("result", {}).get("ok") else 1)  # type: ignore[attr-defined]
        err.write(f"\r{verb} {done}/{total}" + (f" ({failed} failed)" if failed else "") +
                  ("\n" if done >= total else ""))
        err.flush()
    show.failed = 0  # type: ignore[attr-defined]
    return show


def _batches(items: list) -> list[tuple[int, list]]:
    """``items`` in runs the daemon takes in one request, each with its first item's index:
    at most MAX_REQUEST_ITEMS items, MAX_REQUEST_VALUES JSON values (:func:`~iscsictl.ipc.
    message_values`, as the daemon counts them) and half of MAX_MESSAGE's bytes."""
    import json

    from ..ipc import MAX_MESSAGE, MAX_REQUEST_ITEMS, MAX_REQUEST_VALUES, message_values

    room = MAX_REQUEST_VALUES - 64  # (the request's own keys and values)
    out: list[tuple[int, list]] = []
    start, values, size = 0, 0, 0
    for i, item in enumerate(items):
        data = json.dumps(item, separators=(",", ":")).encode()
        v, n = message_values(data) + 1, len(data) + 1
        if i > start and (i - start == MAX_REQUEST_ITEMS or values + v > room
                          or size + n > MAX_MESSAGE // 2):
            out.append((start, items[start:i]))
            start, values, size = i, 0, 0
        values, size = values + v, size + n
    if start < len(items):
        out.append((start, items[start:]))
    return out


def _call_in_requests(op: str, progress, key: str, items: list,  # type: ignore[no-untyped-def]
                      wait: bool = True, **args: Any) -> list:
    """The daemon's ``op`` for ``items`` (its argument ``key``), in requests it takes whole
    (:func:`_batches`), one after another (it refuses a longer one whole: a bulk login of
    more records did nothing); their results in order, ``progress`` counting across them.
    Without ``wait``, each request is posted and nothing is returned."""
    results: list = []
    for start, batch in _batches(items):
        part = {key: batch, **args}
        if not wait:
            daemon_client().post(op, **part)
            continue
        shifted = None if progress is None else (
            lambda ev, base=start: progress({**ev, "done": base + ev.get("done", 0)}))
        results += daemon_client().call(op, shifted, **part)
    return results


def login_records(records: list[Any],  # type: ignore[no-untyped-def]
                  initiator_name: str | Callable[[], str], o, multiple: bool = False,
                  json_results: list | None = None, wait: bool = True,
                  present_ok: bool = False) -> int:
    """Log in to each node :class:`~iscsictl.db.record.Record`; returns the exit code.
    The daemon gets each record as the text of its keys that differ from the compiled
    defaults (it restores the rest: IPC v2).  ``multiple``: one more session to each,
    whatever node.session.nr_sessions says (``-m session -r SID -o new``).  With --json the
    results are printed, or added to ``json_results`` when given (one JSON document).
    Without ``wait`` (``-W``) the request is sent and not waited for, as iscsiadm's
    iscsid_reqs_close: the "Logging in to" lines, and 0 unless a session was present
    already (15); each pending login is ``{"node": ..., "pending": true}`` in JSON.
    ``present_ok``: a session there already is said but no failure (``-m fw -l``).
    ``initiator_name``: the host's, or what gives it (initiatorname.iscsi read, or made),
    called only when a record to log in has no iface name of its own (a firmware's, an
    iface's ``iface.initiatorname``), as iscsid's __session_create takes the iface's first
    and reads no file for it."""
    from ..ipc import DaemonError, DaemonNotRunning
    from ..transport.iface import iface_initiator_name

    if not records:
        raise E.CliError("No records found", E.NO_OBJS_FOUND)
    # as iscsiadm (iscsi_login_portal): a record whose node.session.nr_sessions sessions
    # are all there is said to be present and nothing is attempted; one that needs more
    # than one session gets a "Logging in to ... (multiple)" line per missing session
    counts = [(1, 0)] * len(records) if multiple else _session_counts(records)
    present = [(rec, f"{rec.iface_name}: {wanted} session{'' if wanted == 1 else 's'} "
                     f"requested, but {have} already present.")
               for rec, (wanted, have) in zip(records, counts) if have >= wanted]
    todo = [(rec, wanted - have, multiple or wanted > 1)
            for rec, (wanted, have) in zip(records, counts) if have < wanted]
    records = [rec for rec, _, _ in todo]
    if callable(initiator_name):
        initiator_name = "" if all(iface_initiator_name(rec) for rec in records) \
            else initiator_name()
    exists = 0 if present_ok else SESS_EXISTS  # the code of a session there already
    rc = exists if present else 0
    for _, message in present:
        o.warn(message)
    if not o.json:
        o.lines(f"Logging in to {_describe(rec)}{' (multiple)' if more else ''}"
                for rec, n, more in todo for _ in range(n))
    extra = {"multiple": True} if multiple else {}  # an older daemon ignores it: code 15
    if not wait:
        try:
            _call_in_requests("login", None, "records",
                              [rec.as_strings(omit_defaults=True) for rec in records],
                              wait=False, initiator_name=initiator_name, **extra)
        except DaemonError as exc:
            raise _daemon_error(exc) from None
        pending = [{"node": _describe(rec), "pending": True} for rec in records]
        _json_out(o, [{"ok": False, "code": SESS_EXISTS, "message": message,
                       "node": _describe(rec)} for rec, message in present] + pending,
                  json_results)
        if rc:
            o.error("Could not log into all portals")
        return rc
    try:
        results = _call_in_requests(
            "login", _progress(o, "logging in", len(records)), "records",
            [rec.as_strings(omit_defaults=True) for rec in records],
            initiator_name=initiator_name, **extra)
    except DaemonNotRunning as exc:
        if o.json:
            raise _daemon_error(exc) from None
        for rec in records:  # iscsiadm's lines without iscsid (scripts look for them),
            o.error(f"Could not login to {_describe(rec)}.")  # then how to start ours
            o.error(f"initiator reported error ({exc.code} - {E.err_to_str(exc.code)})")
        o.error(str(exc))
        o.error("Could not log into all portals")
        return exc.code
    except DaemonError as exc:
        raise _daemon_error(exc) from None
    for r in results:
        desc = r.get("node", "")
        if not o.json:  # one line a session made (a record may ask for several)
            o.lines([f"Login to {desc} successful."] * (len(r.get("sids") or ())
                                                        or bool(r.get("ok"))))
        if r.get("ok"):
            continue
        if r.get("code") == SESS_EXISTS:  # another command won the race
            o.warn(r.get("message", "session exists"))
            rc = rc or exists
        else:
            code = int(r.get("code", E.ERR))
            o.error(f"Could not login to {desc}.")
            o.error(f"initiator reported error ({code} - {E.err_to_str(code)})")
            if r.get("message"):
                o.error(r["message"])
            rc = rc or code
    results = [{"ok": False, "code": SESS_EXISTS, "message": message, "node": _describe(rec)}
               for rec, message in present] + results
    _json_out(o, results, json_results)
    if rc:
        o.error("Could not log into all portals")
    return rc


def _json_out(o, results: list, json_results: list | None) -> None:  # type: ignore[no-untyped-def]
    if json_results is not None:
        json_results.extend(results)
    elif o.json:
        o.emit_json(results)


def _describe(rec) -> str:  # type: ignore[no-untyped-def]
    return (f"[iface: {rec.iface_name}, target: {rec['node.name']}, "
            f"portal: {rec['node.conn[0].address']},{rec['node.conn[0].port']}]")


def _session_counts(records: list[Any]) -> list[tuple[int, int]]:
    """(node.session.nr_sessions, sessions it has in sysfs) of each record; a session is
    the record's when target, persistent portal and iface match, the address as
    :func:`~iscsictl.lexical.same_host` compares it (iscsiadm's
    iscsi_match_session_count: a host name and its address are one host).  iscsictld
    checks again: two commands may race."""
    from ..lexical import same_host
    from .session_cmd import existing_sessions

    by_node: dict[tuple[str, int, str], list[tuple[str, int]]] = {}
    for (target, address, port, iface), n in existing_sessions().items():
        by_node.setdefault((target, port, iface), []).append((address, n))
    out = []
    for rec in records:
        try:
            # 0 (or less): none wanted, "0 sessions requested, but 0 already present."
            # (15), as iscsiadm's iscsi_login_portal says it
            wanted = int(rec["node.session.nr_sessions"])
        except (KeyError, TypeError, ValueError):
            wanted = 1
        try:
            address = rec["node.conn[0].address"]
            sessions = by_node.get((rec["node.name"], int(rec["node.conn[0].port"]),
                                    rec.iface_name), [])
        except (KeyError, TypeError, ValueError):  # the daemon will say what is wrong
            sessions = []
        out.append((wanted, sum(n for a, n in sessions if same_host(address, a))))
    return out


def _logout_order(sessions: list[Any]) -> list[Any]:
    """``sessions`` in the order iscsiadm logs out of them (session_info_create_list):
    each after the first one of its target and portal, else after the last of its target,
    else last.  A target's sessions stay together, and so do a portal's within them: its
    first, then the later ones newest first; one pass, not a walk of the list each."""
    order: list[Any] = []  # sessions without a target name, and each target's block
    blocks: dict[str, dict[tuple[Any, Any], tuple[Any, list[Any]]]] = {}
    for s in sessions:
        target = getattr(s, "targetname", None)
        if target is None:
            order.append(s)
            continue
        block = blocks.get(target)
        if block is None:
            block = blocks[target] = {}
            order.append(block)
        portal = (s.address, s.port)
        if portal in block:
            block[portal][1].append(s)
        else:
            block[portal] = (s, [])
    out: list[Any] = []
    for entry in order:
        if not isinstance(entry, dict):
            out.append(entry)
            continue
        for first, later in entry.values():
            out.append(first)
            out.extend(reversed(later))
    return out


def logout_sessions(sessions: list[Any], o, force: bool = False,  # type: ignore[no-untyped-def]
                    safe: bool = False) -> int:
    """Log out of sysfs sessions: objects with ``sid`` whose ``str()`` is iscsiadm's
    ``[sid: N, target: T, portal: A,P]`` (session_cmd's ``_Sess``).  ``force`` logs out
    even when iscsid.safe_logout finds the disks in use; ``safe`` checks them whatever
    iscsid.safe_logout says."""
    from ..ipc import DaemonError

    if not sessions:
        raise E.CliError("No matching sessions found", E.NO_OBJS_FOUND)
    sessions = _logout_order(sessions)
    by_sid = {s.sid: s for s in sessions}
    flash = {s.sid for s in sessions if getattr(s, "flash", False)}
    for s in sessions:
        if not o.json:  # (an HBA firmware's session: iscsi_logout_flashnode_sid's words)
            o.lines([f"Logout sid {s.sid}." if s.sid in flash else
                     f"Logging out of session {s}"])
    try:
        results = _call_in_requests("logout", _progress(o, "logging out", len(by_sid)),
                                    "sids", list(by_sid), force=force, safe=safe or None)
    except DaemonError as exc:
        raise _daemon_error(exc) from None
    rc = 0
    for r in results:
        desc = by_sid.get(r["sid"], f"[sid: {r['sid']}]")
        if r["sid"] in flash:
            desc = f"sid {r['sid']}"
        if r.get("ok"):
            if not o.json:
                o.lines([f"Logout of {desc} successful."])
        else:
            code = int(r.get("code", E.ERR))
            o.error(f"Logout of {desc} failed." if r["sid"] in flash
                    else f"Could not logout of {desc}.")
            o.error(f"initiator reported error ({code} - {E.err_to_str(code)})")
            rc = code  # the last failure's, as iscsiadm's iscsid_logout_reqs_wait
    if o.json:
        o.emit_json(results)
    if rc:
        o.error("Could not logout of all requested sessions")
    return rc
