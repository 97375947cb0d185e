"""The kernel's side of a login as one job on the netlink lane (kernel_session._hand_over):
the order of its requests, a failure after CREATE_SESSION reported with the sid to tear
down, and a cancelled login that still waits for the job it started."""

import asyncio
import errno

import pytest

from iscsictl.daemon import kernel_session as ks
from iscsictl.netlink import IscsiKernelError, IscsiParam
from iscsictl.netlink.socket import SessionIds

PARAMS = [(IscsiParam.MAX_RECV_DLENGTH, "262144"), (IscsiParam.ISID, "00023d000001"),
          (IscsiParam.EXP_STATSN, "7")]


class FakeLaneClient:
    """Records the calls of a blocking IscsiNetlink; ``fail`` names the call that raises."""

    def __init__(self, fail: str | None = None, set_results=None):
        self.calls, self.fail = [], fail
        self.set_results = set_results or [None, IscsiKernelError(errno.ENOSYS, "set_param"), None]

    def _call(self, name, *args):
        self.calls.append((name, args))
        if name == self.fail:
            raise IscsiKernelError(errno.EINVAL, name)

    def create_session(self, handle, cmdsn, cmds_max, queue_depth):
        self._call("create_session", handle, cmdsn, cmds_max, queue_depth)
        return SessionIds(sid=5, host_no=9)

    def create_conn(self, handle, sid, cid):
        self._call("create_conn", handle, sid, cid)
        return 0

    def bind_conn(self, handle, sid, cid, fd, leading):
        self._call("bind_conn", handle, sid, cid, fd, leading)

    def set_params(self, handle, sid, cid, params):
        self._call("set_params", handle, sid, cid, list(params))
        return self.set_results

    def start_conn(self, handle, sid, cid):
        self._call("start_conn", handle, sid, cid)


def test_hand_over_sequence_and_held_params():
    knl = FakeLaneClient()
    ids, cid, held = ks._hand_over(knl, 3, 17, 128, 32, 42, PARAMS)
    assert (ids.sid, ids.host_no, cid) == (5, 9, 0)
    assert [c[0] for c in knl.calls] == ["create_session", "create_conn", "bind_conn",
                                         "set_params", "start_conn"]
    assert knl.calls[0][1] == (3, 17, 128, 32)  # CREATE_SESSION carries the login's CmdSN
    assert knl.calls[2][1] == (3, 5, 0, 42, True)  # the login socket's fd, leading
    assert held == {IscsiParam.MAX_RECV_DLENGTH: "262144", IscsiParam.ISID: None,
                    IscsiParam.EXP_STATSN: "7"}  # ISID is optional: ENOSYS tolerated


@pytest.mark.parametrize("fail", ["create_conn", "bind_conn", "start_conn"])
def test_failure_after_create_session_names_the_sid(fail):
    with pytest.raises(ks.HandoverFailed) as e:
        ks._hand_over(FakeLaneClient(fail), 3, 1, 128, 32, 42, PARAMS)
    assert e.value.sid == 5 and isinstance(e.value.cause, IscsiKernelError)


def test_required_param_refused_is_a_failure_with_the_sid():
    knl = FakeLaneClient(set_results=[IscsiKernelError(errno.EINVAL, "set_param"), None, None])
    with pytest.raises(ks.HandoverFailed) as e:
        ks._hand_over(knl, 3, 1, 128, 32, 42, PARAMS)
    assert e.value.sid == 5 and e.value.cause.errno == errno.EINVAL
    assert "start_conn" not in [c[0] for c in knl.calls]


def test_create_session_failure_has_nothing_to_tear_down():
    with pytest.raises(IscsiKernelError):
        ks._hand_over(FakeLaneClient("create_session"), 3, 1, 128, 32, 42, PARAMS)


def test_cancelled_login_waits_for_its_kernel_job():
    """A login cancelled while its job runs on the lane learns the job's outcome (to undo
    it) before it ends: nothing the kernel made is forgotten."""
    async def main():
        loop = asyncio.get_running_loop()
        job = loop.create_future()
        waiter = asyncio.ensure_future(ks._to_the_end(job))
        await asyncio.sleep(0)
        waiter.cancel()  # e.g. the daemon stops
        await asyncio.sleep(0.01)
        assert not waiter.done()  # still waiting for the job
        job.set_result("session 5")
        done, cancelled = await waiter
        return done.result(), cancelled

    assert asyncio.run(main()) == ("session 5", True)
