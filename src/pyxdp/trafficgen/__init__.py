"""Traffic generator: XDP live frames from inside the sending namespace.

:func:`generator_program` builds the per-packet rewriting program for a template frame;
:class:`Generator` sends it with ``BPF_PROG_TEST_RUN`` + ``BPF_F_TEST_XDP_LIVE_FRAMES``
on one or more CPUs, bounded by count and duration, and reports pps/bps.
"""

from pyxdp.trafficgen._program import FrameLayout, TemplateError, generator_program, layout_of
from pyxdp.trafficgen._run import Generator, Report
from pyxdp.trafficgen._templates import MAX_FRAME, MIN_FRAME, PROTOS, template

__all__ = ["MAX_FRAME", "MIN_FRAME", "PROTOS", "FrameLayout", "Generator", "Report",
           "TemplateError", "generator_program", "layout_of", "template"]
