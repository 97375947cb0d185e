"""``iscsictl-start``: log in to a boot disk without a running daemon (open-iscsi's
iscsistart, for an initramfs).

* ``-b``: every target the boot firmware describes (iBFT or an offload driver's
  iscsi_boot<N>), with its initiator name and CHAP;
* ``-i NAME -t TARGET -g TPGT -a ADDR [-p PORT] [-u USER -w PASS] [-U USER_IN -W PASS_IN]``:
  one target given on the command line;
* ``-P NAME=VALUE`` (repeatable): a node record setting for those logins;
* ``-f``: print the firmware's targets (as ``iscsictl -m fw``; ``--show`` for secrets).

The logins run in this process with iscsictld's own code (netlink handover, SCSI scan:
the command returns once the disks are there) and the sessions stay in the kernel when it
exits; the iscsictld started later adopts them (ISIDs are kept in its state directory,
credentials are read back from sysfs).  Several started side by side (one per path or
target, as an initramfs starts iscsistarts) log in at once, each beside the others.  When
iscsictld is already running the logins go to it instead.  Exit code: 0, or 1
(ISCSI_ERR, as iscsistart) when a login failed (a session already there too); usage
errors 7.  Records come from iscsid.conf's defaults (a ``-i`` login's CHAP from its
options only, as iscsistart's), one session a target whatever node.session.nr_sessions
says; nothing is written to the node DB.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
from typing import Any

PROG = "iscsictl-start"
ERR, INVAL = 1, 7
NO_FIRMWARE = 21  # ISCSI_ERR_NO_OBJS_FOUND: the firmware describes no target


#: iscsistart's options: (short, long, argparse keywords); -b/-f/-N/--show/-v below
_OPTIONS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("-c", "--config", {"metavar": "PATH", "help": "the iscsid.conf to read (any name), or "
                                                   "the directory holding iscsid.conf "
                                                   "(default /etc/iscsi/iscsid.conf)"}),
    ("-i", "--initiatorname", {"metavar": "NAME", "help": "the initiator's name"}),
    ("-t", "--targetname", {"metavar": "NAME", "help": "the target's name"}),
    ("-g", "--tgpt", {"type": int, "metavar": "N", "help": "its portal group tag"}),
    ("-a", "--address", {"metavar": "ADDRESS", "help": "its portal's address"}),
    ("-p", "--port", {"type": int, "default": 3260, "metavar": "N",
                      "help": "its portal's port (default 3260)"}),
    ("-u", "--username", {"metavar": "NAME", "help": "CHAP: the initiator's user name"}),
    ("-w", "--password", {"metavar": "SECRET", "help": "CHAP: the initiator's secret"}),
    ("-U", "--username_in", {"metavar": "NAME", "help": "mutual CHAP: the target's name"}),
    ("-W", "--password_in", {"metavar": "SECRET", "help": "mutual CHAP: the target's secret"}),
    ("-d", "--debug", {"type": int, "default": 0, "metavar": "LEVEL",
                       "help": "log the logins' steps to stderr (any level above 0)"}),
    ("-P", "--param", {"action": "append", "default": [], "metavar": "NAME=VALUE",
                       "help": "a node record setting for the logins (repeatable)"}),
)


#: iscsistart's own long options (usr/iscsistart.c long_options): a prefix is resolved
#: among them first (--show is ours)
_ISCSISTART_LONGS = frozenset((
    "config", "initiatorname", "targetname", "tgpt", "address", "port", "username",
    "password", "username_in", "password_in", "debug", "fwparam_connect", "fwparam_network",
    "fwparam_print", "param", "help", "version"))

#: the options iscsistart acts on as its getopt loop reaches them, then exits
_ACTS_AND_EXITS = frozenset(("--version", "--help", "--fwparam_network", "--fwparam_print"))

#: iscsistart's check_str_param_len: the longest value each option takes, bytes
#: (TARGET_NAME_MAXLEN, NI_MAXHOST, AUTH_STR_MAX_LEN)
_MAX_LEN = {"targetname": 255, "address": 1025, "username": 256, "password": 256,
            "username_in": 256, "password_in": 256}
_SECRETS = ("password", "password_in")


def _check_length(name: str, value: str | None) -> None:
    """iscsistart's refusal of an over-long value (7); a secret is not repeated."""
    most = _MAX_LEN[name]
    if value is not None and len(os.fsencode(value)) > most:
        shown = "" if name in _SECRETS else f" {value}"
        print(f"{PROG}: invalid {name}{shown}. Max {name} length is {most}.", file=sys.stderr)
        raise SystemExit(INVAL)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description="Log in to a boot disk without a running iscsictld "
        "(open-iscsi's iscsistart, for an initramfs): the targets the boot firmware "
        "describes (-b), or one given by -i -t -g -a.")
    for short, long, kw in _OPTIONS:
        p.add_argument(short, long, **kw)
    p.add_argument("-b", "--fwparam_connect", action="store_true",
                   help="log in to the targets the boot firmware describes")
    p.add_argument("-f", "--fwparam_print", action="store_true",
                   help="print the boot firmware's targets")
    p.add_argument("-N", "--fwparam_network", action="store_true",
                   help="bring up the boot firmware's NICs: each target's NIC with its "
                   "address, and a route to the target through it")
    p.add_argument("--show", action="store_true", help="-f: print CHAP secrets")
    p.add_argument("-v", "--version", action="store_true", help="print the version")
    return p


def _out():
    """The CLI's Output (fw_cmd's helpers warn through it), prefixed ``iscsictl-start:``."""
    from iscsictl.cli.output import Output

    out = Output()
    out.PREFIX = f"{PROG}: "
    return out


def _firmware_targets(none: str) -> list:
    """The firmware's boot contexts (:func:`iscsictl.cli.fw_cmd.boot_contexts`); without any,
    iscsistart's words ``none`` on stdout (its printf) and SystemExit(21).  Raises CliError
    when the firmware cannot be read (not root: 1)."""
    from iscsictl.cli import errors as E
    from iscsictl.cli.fw_cmd import boot_contexts

    try:
        return boot_contexts(_out())
    except E.CliError as e:
        if e.exit_code != NO_FIRMWARE:
            raise
        print(none)
        raise SystemExit(NO_FIRMWARE) from None


def _records(args: argparse.Namespace, db) -> tuple[list, str]:  # type: ignore[no-untyped-def]
    """The records to log in to and the initiator name; raises SystemExit on bad input."""
    from iscsictl.cli.fw_cmd import firmware_records

    if args.fwparam_connect:
        from iscsictl.cli import errors as E
        from iscsictl.cli._common import sysfs_root
        from iscsictl.kernel.firmware import FirmwareAccessError, boot_entry

        try:
            boot = boot_entry(sysfs_root())
        except FirmwareAccessError as e:  # not root: 1, as boot_contexts says it
            raise E.CliError(e.strerror, E.ERR) from None
        if boot is None:  # iscsistart's fw_get_entry: the firmware booted from none
            print("Could not get boot entry.")
            raise SystemExit(NO_FIRMWARE)
        contexts = _firmware_targets("Could not setup fw entries.")
        name = boot[1] or args.initiatorname  # -i if the table has none
        if not name:
            print(f"{PROG}: the firmware names no initiator: give one with -i", file=sys.stderr)
            raise SystemExit(INVAL)
        records = firmware_records(db, contexts, warn=_out().warn)
        if not records:
            raise SystemExit(21)  # each one left out was named above
        return records, name
    tpgt = None if args.tgpt == -1 else args.tgpt  # iscsistart: -1 is the tag unknown
    missing = [what for what, v in (("InitiatorName", args.initiatorname),
                                    ("Portal Group", tpgt), ("TargetName", args.targetname),
                                    ("IP Address", args.address)) if v is None]
    if missing:
        print(f"{PROG}: {missing[0]} not set. Exiting {PROG}", file=sys.stderr)
        raise SystemExit(INVAL)
    rec = db.new_node_record(args.targetname, args.address, args.port, args.tgpt, "default")
    rec.set("iface.initiatorname", args.initiatorname)
    rec.set("node.startup", "onboot")  # a boot disk's: its login retried as iscsistart's
    # CHAP from the command line only, as iscsistart's -i (its built-in record): iscsid.conf's
    # credentials are for the DB's targets, and its mutual ones would fail this login
    rec.reset("node.session.auth.")
    for key, value in (("username", args.username), ("password", args.password),
                       ("username_in", args.username_in), ("password_in", args.password_in)):
        if value:
            rec.set(f"node.session.auth.{key}", value)
    return [rec], args.initiatorname


def _fwparam_network() -> int:
    """``-N``: each firmware target's NIC brought up (:mod:`iscsictl.kernel.fw_network`),
    iscsistart's lines on stdout and what changed below each; 0, 21 without firmware
    targets, 1 when a NIC could not be set up (the others are still tried)."""
    from iscsictl.cli import errors as E
    from iscsictl.cli._common import sysfs_root
    from iscsictl.kernel.firmware import offload_iface
    from iscsictl.kernel.fw_network import FwNetworkError, RtnlShell, nic_setup
    from iscsictl.kernel.sysfs import Sysfs

    try:
        contexts = _firmware_targets("Could not setup fw entries.")
    except E.CliError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return e.exit_code
    sysfs = Sysfs(sysfs_root())
    rc, shell = 0, None
    try:
        for ctx in contexts:
            netdev = ctx.netdev or sysfs.netdev_by_hwaddress(ctx.mac) or ""
            if offload_iface(ctx, sysfs) is not None:  # the HBA's own network, not netdev's
                print(f"Setting up offload interface {netdev or ctx.boot_root}", flush=True)
                if ctx.host_no is None and netdev:  # an iBFT NIC's port (cxgb4i, bnx2i):
                    # its device's link up, as iscsistart's iface_setup_from_boot_context
                    try:  # (a cxgb4i connection is refused on a device that is down)
                        shell = shell or RtnlShell()
                        done = shell.link_up(netdev)
                    except FwNetworkError as e:  # a warning there too
                        print(f"{PROG}: Could not bring up netdev {netdev} for boot: {e}",
                              file=sys.stderr)
                        continue
                    print(f"  {', '.join(done) if done else 'already set up'}")
                continue
            print(f"Setting up software interface {netdev or ctx.mac}", flush=True)
            try:
                setup = nic_setup(ctx, netdev)
                shell = shell or RtnlShell()
                done = shell.apply(setup)
            except FwNetworkError as e:
                print(f"{PROG}: Setting up software interface {netdev or ctx.mac} failed: {e}",
                      file=sys.stderr)
                rc = ERR
                continue
            print(f"  {', '.join(done) if done else 'already set up'}")
    finally:
        if shell is not None:
            shell.close()
    return rc


def _apply_params(records: list, params: list[str]) -> None:
    """``-P`` settings over iscsistart's boot settings (iscsistart's apply_params:
    :func:`iscsictl.cli.fw_cmd.apply_user_params` with its rebinding).  Raises InvalidKey,
    InvalidValue (exit 1, as iscsistart's failed setup_session); SystemExit(7) for a ``-P``
    without a value (iscsistart's parse_param)."""
    from iscsictl.cli.fw_cmd import apply_user_params

    given = {}
    for text in params:
        name, value = _param(text)
        given.setdefault(name, value)  # iscsistart's list_add puts each in front: the
        # last given is applied first, so the first given is the one that stays
    for rec in records:
        apply_user_params(rec, given, rebind=True)


def _param(text: str) -> tuple[str, str]:
    """A ``-P NAME=VALUE`` as (NAME, VALUE); SystemExit(7) without a value (iscsistart's
    parse_param)."""
    name, sep, value = text.partition("=")
    if not sep or not value:
        print(f"{PROG}: Invalid --param {text}. Missing value.", file=sys.stderr)
        raise SystemExit(INVAL)
    return name, value


async def _login_here(records: list[dict[str, str]], initiator_name: str) -> list[dict[str, Any]]:
    """The logins through an in-process iscsictld that serves nobody (no IPC socket) and
    leaves its sessions in the kernel when it closes."""
    import asyncio
    import logging

    from .instance import NodeLocks, node_locks_path
    from .service import Daemon

    loop, login = asyncio.get_running_loop(), asyncio.current_task()
    assert login is not None
    stopped = []

    def stop() -> None:  # SIGTERM: a login under way is undone (its session torn down,
        stopped.append(True)  # netlink still open), as iscsictld's stop undoes its
        login.cancel()  # requests'; the sessions logged in stay
    loop.add_signal_handler(signal.SIGTERM, stop)
    daemon = Daemon(None, autostart=False, takeover=False, side_by_side=True)
    path = node_locks_path(_lock_file())
    try:  # the other iscsictl-starts' logins to one of these nodes are waited for
        daemon.node_locks = NodeLocks(path)
    except OSError as exc:
        print(f"{PROG}: cannot open {path} ({exc.strerror}): another iscsictl-start "
              "started for one of these nodes may log in to it too", file=sys.stderr)
    try:
        await daemon.start()
        return await daemon.login(records, initiator_name)
    except asyncio.CancelledError:
        if not stopped:
            raise
        return [{"ok": False, "code": ERR, "message": "stopped (SIGTERM) before the logins "
                 "ended: a login under way was undone"}] * len(records)
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        await daemon.close()
        if daemon.node_locks is not None:
            daemon.node_locks.close()
        logging.getLogger(__name__).debug("closed; the sessions stay in the kernel")


def _login(records: list[dict[str, str]], initiator_name: str) -> list[dict[str, Any]]:
    """The logins: made here while this process holds iscsictld's lock, shared with the
    other iscsictl-starts (several started side by side, one per path or target, log in
    at once, as iscsistarts do), or asked of the iscsictld that holds it.  The lock says
    who owns the kernel's sessions: a connection to the daemon's socket would not (with
    ``iscsictld.socket`` systemd answers it and starts the daemon, which then waits for
    the lock the iscsictl-starts hold)."""
    from .instance import LockHeld, iscsid_running, take_lock

    if iscsid_running():
        print(f"{PROG}: open-iscsi's iscsid is running (or its iscsid.socket listens) and "
              "owns the kernel's iSCSI interface", file=sys.stderr)
        raise SystemExit(ERR)
    _name_process()
    try:
        lock = take_lock(_lock_file(), shared=True)
    except LockHeld as exc:
        got = _after_other_start(exc)
        if isinstance(got, LockHeld):  # an iscsictld holds it: the logins are its
            return _daemon_login(records, initiator_name, got)
        lock = got
    return _login_locked(lock, records, initiator_name)


def _lock_file() -> str:
    """iscsictld's lock file (``$ISCSICTLD_LOCK``, for tests)."""
    from .instance import LOCK_FILE

    return os.environ.get("ISCSICTLD_LOCK", LOCK_FILE)


def _daemon_login(records: list[dict[str, str]], initiator_name: str,
                  held: Exception) -> list[dict[str, Any]]:
    """The logins asked of the iscsictld holding the lock (``held``: the LockHeld met)."""
    from iscsictl.ipc import DaemonClient, DaemonError, DaemonNotRunning

    try:
        DaemonClient(timeout=5).call("ping")
        return DaemonClient().call("login", records=records, initiator_name=initiator_name)
    except DaemonNotRunning:  # it holds the lock and serves nothing (yet)
        print(f"{PROG}: {held}", file=sys.stderr)
        raise SystemExit(ERR) from None
    except DaemonError as e:  # it runs, but cannot be asked (an older one, stuck ...) or
        return [{"ok": False, "code": e.code, "message": str(e)}] * len(records)  # failed


def _name_process() -> None:
    """This process's name (``/proc/self/comm``) made ``iscsictl-start`` whatever started
    it (``python -m ...``), so that a second one knows whose lock it meets."""
    try:
        with open("/proc/self/comm", "w") as f:
            f.write(PROG)
    except OSError:
        pass


def _after_other_start(exc: Any) -> Any:
    """The lock (its descriptor, shared), once the process holding it exclusively has
    ended: an iscsictl-start of a version before session 55, which took it so (however
    long its logins take: giving up after 600 s left a working path never tried), or a
    holder gone before it was named; ``exc`` itself when the holder is another process
    (an iscsictld), or the LockHeld of an iscsictld that takes the lock meanwhile, once
    it answers (the logins are then its; before, one not serving yet was asked once and
    this one exited 1, its target never tried)."""
    from iscsictl.ipc import DaemonClient, DaemonError, DaemonNotRunning

    from .instance import take_lock_within

    if not _boot_login_or_unwritten(exc):
        return exc
    print(f"{PROG}: waiting for process {exc.holder} (iscsictl-start) to end its logins",
          file=sys.stderr)
    met = [exc]

    def daemon_holds(held: Any) -> int | None:
        met[0] = held
        if _boot_login_or_unwritten(held):
            return None
        try:  # an iscsictld took it: asked once it answers (it may still be starting:
            DaemonClient(timeout=1).call("ping")  # its command server, adoption ...)
        except DaemonNotRunning:
            return None
        except DaemonError:  # it runs, but cannot be asked: said by _daemon_login
            pass
        return -1
    lock = take_lock_within(_lock_file(), math.inf,
                            daemon_holds, shared=True)
    return met[0] if lock is None or lock < 0 else lock


def _boot_login_or_unwritten(exc: Any) -> bool:
    """Whether the lock's holder is an iscsictl-start, or one not named (gone before its
    PID was read, or the file's, the kernel's lock table unread): waited for, not asked."""
    from .instance import held_by_boot_login

    return held_by_boot_login(exc) or not _alive(exc.holder)


def _alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, TypeError, OverflowError, ProcessLookupError):
        return False
    except PermissionError:
        pass
    return True


def _login_locked(lock: int, records: list[dict[str, str]],
                  initiator_name: str) -> list[dict[str, Any]]:
    import asyncio

    from iscsictl.netlink import IscsiNetlinkError

    try:
        return asyncio.run(_login_here(records, initiator_name))
    except IscsiNetlinkError as e:  # no module, no privilege, not the initial netns: said
        print(f"{PROG}: {e}", file=sys.stderr)  # at once, and 1, as iscsistart's failed
        raise SystemExit(ERR) from None  # setup_session (iscsictld's 12 is not a login's)
    finally:
        os.close(lock)


class _Unfailing:
    """``stream`` (None: a closed descriptor) whose writes never fail: iscsistart's printf
    ignores a closed, full or broken stdout, and its logins go on (an initramfs may start
    it so).  Before, the "Logging into" line's error ended the command before the login."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            if self._stream is not None:
                self._stream.write(text)
        except (OSError, ValueError):
            pass
        return len(text)

    def flush(self) -> None:
        try:
            if self._stream is not None:
                self._stream.flush()
        except (OSError, ValueError):
            pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _caught(signo: int, frame: Any) -> None:
    print(f"{PROG}: pid {os.getpid()} caught signal -{signo}", file=sys.stderr)  # iscsistart's


def console() -> None:
    """The ``iscsictl-start`` executable: :func:`main` (its output never failing it:
    :class:`_Unfailing`), its output flushed, then the process ends at once (``os._exit``)
    with its exit code.  Nothing is left to clean up by then (the sessions stay in the
    kernel, the in-process daemon is closed, the lock released), and the interpreter's
    own teardown of the daemon's modules and threads is what a boot waits for last."""
    sys.stdout, sys.stderr = _Unfailing(sys.stdout), _Unfailing(sys.stderr)
    signal.signal(signal.SIGINT, _caught)  # no Ctrl-C, as iscsistart: a key pressed at
    rc = main()  # a slow boot must not fail the root disk's login
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be said
            pass
    if "logging" in sys.modules:
        sys.modules["logging"].shutdown()
    os._exit(rc & 0xFF)


def main(argv: list[str] | None = None) -> int:
    """The ``iscsictl-start`` command; returns its exit code (usage errors and the
    helpers' early exits included)."""
    try:
        return _run(argv)
    except SystemExit as e:  # argparse's usage error (2) is iscsistart's ISCSI_ERR_INVAL
        if isinstance(e.code, str):  # a message: said, never swallowed
            print(f"{PROG}: {e.code}", file=sys.stderr)
        return INVAL if e.code == 2 else e.code if isinstance(e.code, int) else ERR


def _run(argv: list[str] | None) -> int:
    from iscsictl import __version__
    from iscsictl.cli import errors as E
    from iscsictl.db.errors import DBError
    from iscsictl.db.schema import FORMAT_VERSION
    from iscsictl.db.store import NodeDB

    from iscsictl.cli._getopt import getopt_argv

    parser = _parser()  # read as iscsistart's getopt_long reads it (-w -secret, --targ)
    options, words = getopt_argv(parser, sys.argv[1:] if argv is None else list(argv),
                                 _ISCSISTART_LONGS)
    first = next((o for o in options if o in _ACTS_AND_EXITS), None)
    if first:  # iscsistart acts on the first of -v, -h, -N and -f and exits: not a later one
        options = [o for o in options if o == first or o not in _ACTS_AND_EXITS]
    for option in options:  # iscsistart's getopt loop refuses an over-long value or a -P
        if option in _ACTS_AND_EXITS or option == "--fwparam_connect":  # without one when
            break  # it reaches it: before it acts on a later -f, -N, -v, -h or -b
        name, _, value = option[2:].partition("=")
        if name == "param":
            _param(value)
        elif name in _MAX_LEN:
            _check_length(name, value)
    args = parser.parse_args(options)
    for word in words:  # iscsistart ignores them without a word
        print(f"{PROG}: '{word}' is not an option's: ignored", file=sys.stderr)
    if first is None:  # (and those after a -b: the rest were checked above)
        for name in _MAX_LEN:
            _check_length(name, getattr(args, name))
    if args.version:
        print(f"{PROG} version {__version__}")  # as iscsictl -V (not the DB format's)
        return 0
    import logging
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format=f"%(relativeCreated)6.0f ms {PROG}: %(message)s")
    if args.fwparam_network:
        return _fwparam_network()
    try:
        config, config_file = args.config, None
        if config and os.path.isfile(config):  # iscsistart's -c names the file itself
            config, config_file = os.path.dirname(config) or ".", config
        db = NodeDB(None, config, warn=_out().warn, config_file=config_file)
        if args.fwparam_print:
            from iscsictl.cli._common import sysfs_root
            from iscsictl.cli.fw_cmd import entry_lines
            from iscsictl.kernel.firmware import offload_iface
            from iscsictl.kernel.sysfs import Sysfs
            sysfs = Sysfs(sysfs_root())
            for ctx in _firmware_targets("Could not get list of targets from firmware."):
                t = (offload_iface(ctx, sysfs) or {}).get("iface.transport_name", "tcp")
                print("\n".join(entry_lines(ctx, t, args.show, FORMAT_VERSION)))
            return 0
        records, initiator_name = _records(args, db)
        try:
            _apply_params(records, args.param)
        except DBError as e:  # iscsistart checks them as it logs in (login_session's
            print(f"{PROG}: {e}", file=sys.stderr)  # apply_params): 1, as a failed login
            return ERR
        for rec in records:  # one login request, one session, whatever the settings say
            rec.set("node.session.nr_sessions", "1")  # (iscsistart's login_session)
    except E.CliError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return e.exit_code
    except DBError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return e.exit_code
    for rec in records:
        print(f"{PROG}: Logging into {rec['node.name']} {rec['node.conn[0].address']}:"
              f"{rec['node.conn[0].port']},{rec['node.tpgt']}")
    sys.stdout.flush()
    results = _login([rec.as_strings(omit_defaults=True) for rec in records], initiator_name)
    rc = 0
    for rec, r in zip(records, results):
        if r.get("ok"):
            for sid in r.get("sids") or ():  # on stderr: iscsistart's log_warning
                print(f"{PROG}: Connection{sid}:0 to [target: {rec['node.name']}, portal: "
                      f"{rec['node.conn[0].address']},{rec['node.conn[0].port']}] through "
                      f"[iface: {rec.iface_name}] is operational now", file=sys.stderr)
        else:  # 15 too, a session already there: iscsistart's login_session fails it
            code = int(r.get("code", ERR))
            print(f"{PROG}: initiator reported error ({code} - {E.err_to_str(code)})",
                  file=sys.stderr)
            if r.get("message"):
                print(f"{PROG}: {r['message']}", file=sys.stderr)
            rc = ERR
    return rc


if __name__ == "__main__":
    console()
