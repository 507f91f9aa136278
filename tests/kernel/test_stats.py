"""BPF_ENABLE_STATS: run counts appear while the fd is held and stop when it is closed."""

from __future__ import annotations

import pytest

from pyxdp.asm import programs as progs
from pyxdp.isa import XdpAction
from pyxdp.kernel import Program, enable_stats, test_run

pytestmark = pytest.mark.kernel


def test_stats_count_runs_only_while_enabled() -> None:
    with Program.load(progs.xdp_verdict(XdpAction.PASS)) as p:
        with enable_stats() as fd:
            assert not fd.closed
            before = p.info().run_cnt
            test_run(p, bytes(64), repeat=500)
            info = p.info()
            assert info.run_cnt - before == 500 and info.run_time_ns > 0
        assert fd.closed
        counted = p.info().run_cnt
        test_run(p, bytes(64), repeat=500)
        assert p.info().run_cnt == counted  # no longer counting
