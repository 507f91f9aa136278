"""Which program type a section name means: libbpf's ``SEC()`` conventions in one table.

A pattern ending in ``+`` matches the bare name or ``name/anything`` (the rest is what to
attach to); ``/``-terminated patterns need the suffix; others match exactly.  The first
matching row wins, so specific rows come first.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyxdp.abi import BPF_F_SLEEPABLE, AttachType, ProgType
from pyxdp.spec import XDP_FLAGS_HAS_FRAGS

F_SLEEPABLE = BPF_F_SLEEPABLE
F_FRAGS = XDP_FLAGS_HAS_FRAGS


def _at(value: int) -> AttachType | int:
    """An attach type; values newer than our enum are kept as plain ints."""
    try:
        return AttachType(value)
    except ValueError:
        return value


TCX_INGRESS, TCX_EGRESS = _at(46), _at(47)
A = AttachType
P = ProgType

# (pattern, program type, expected attach type, prog flags)
SECTION_TABLE: tuple[tuple[str, ProgType, AttachType | int | None, int], ...] = (
    ("socket", P.SOCKET_FILTER, None, 0),
    ("sk_reuseport/migrate", P.SK_REUSEPORT, A.SK_REUSEPORT_SELECT_OR_MIGRATE, 0),
    ("sk_reuseport", P.SK_REUSEPORT, A.SK_REUSEPORT_SELECT, 0),
    ("kprobe.multi+", P.KPROBE, A.TRACE_KPROBE_MULTI, 0),
    ("kretprobe.multi+", P.KPROBE, A.TRACE_KPROBE_MULTI, 0),
    ("kprobe+", P.KPROBE, None, 0),
    ("kretprobe+", P.KPROBE, None, 0),
    ("uprobe+", P.KPROBE, None, 0),
    ("uretprobe+", P.KPROBE, None, 0),
    ("uprobe.s+", P.KPROBE, None, F_SLEEPABLE),
    ("uretprobe.s+", P.KPROBE, None, F_SLEEPABLE),
    ("ksyscall+", P.KPROBE, None, 0),
    ("kretsyscall+", P.KPROBE, None, 0),
    ("usdt+", P.KPROBE, None, 0),
    ("tc/ingress", P.SCHED_CLS, TCX_INGRESS, 0),
    ("tc/egress", P.SCHED_CLS, TCX_EGRESS, 0),
    ("tcx/ingress", P.SCHED_CLS, TCX_INGRESS, 0),
    ("tcx/egress", P.SCHED_CLS, TCX_EGRESS, 0),
    ("tc", P.SCHED_CLS, None, 0),
    ("classifier", P.SCHED_CLS, None, 0),
    ("action", P.SCHED_ACT, None, 0),
    ("tracepoint+", P.TRACEPOINT, None, 0),
    ("tp+", P.TRACEPOINT, None, 0),
    ("raw_tracepoint.w+", P.RAW_TRACEPOINT_WRITABLE, None, 0),
    ("raw_tp.w+", P.RAW_TRACEPOINT_WRITABLE, None, 0),
    ("raw_tracepoint+", P.RAW_TRACEPOINT, None, 0),
    ("raw_tp+", P.RAW_TRACEPOINT, None, 0),
    ("tp_btf+", P.TRACING, A.TRACE_RAW_TP, 0),
    ("fentry.s+", P.TRACING, A.TRACE_FENTRY, F_SLEEPABLE),
    ("fmod_ret.s+", P.TRACING, A.MODIFY_RETURN, F_SLEEPABLE),
    ("fexit.s+", P.TRACING, A.TRACE_FEXIT, F_SLEEPABLE),
    ("fentry+", P.TRACING, A.TRACE_FENTRY, 0),
    ("fmod_ret+", P.TRACING, A.MODIFY_RETURN, 0),
    ("fexit+", P.TRACING, A.TRACE_FEXIT, 0),
    ("freplace+", P.EXT, None, 0),
    ("lsm.s+", P.LSM, A.LSM_MAC, F_SLEEPABLE),
    ("lsm_cgroup+", P.LSM, A.LSM_CGROUP, 0),
    ("lsm+", P.LSM, A.LSM_MAC, 0),
    ("iter.s+", P.TRACING, A.TRACE_ITER, F_SLEEPABLE),
    ("iter+", P.TRACING, A.TRACE_ITER, 0),
    ("syscall", P.SYSCALL, None, F_SLEEPABLE),
    ("xdp.frags/devmap", P.XDP, A.XDP_DEVMAP, F_FRAGS),
    ("xdp/devmap", P.XDP, A.XDP_DEVMAP, 0),
    ("xdp.frags/cpumap", P.XDP, A.XDP_CPUMAP, F_FRAGS),
    ("xdp/cpumap", P.XDP, A.XDP_CPUMAP, 0),
    ("xdp.frags", P.XDP, A.XDP, F_FRAGS),
    ("xdp+", P.XDP, A.XDP, 0),
    ("perf_event", P.PERF_EVENT, None, 0),
    ("lwt_in", P.LWT_IN, None, 0),
    ("lwt_out", P.LWT_OUT, None, 0),
    ("lwt_xmit", P.LWT_XMIT, None, 0),
    ("lwt_seg6local", P.LWT_SEG6LOCAL, None, 0),
    ("sockops", P.SOCK_OPS, A.CGROUP_SOCK_OPS, 0),
    ("sk_skb/stream_parser", P.SK_SKB, A.SK_SKB_STREAM_PARSER, 0),
    ("sk_skb/stream_verdict", P.SK_SKB, A.SK_SKB_STREAM_VERDICT, 0),
    ("sk_skb/verdict", P.SK_SKB, A.SK_SKB_VERDICT, 0),
    ("sk_skb", P.SK_SKB, None, 0),
    ("sk_msg", P.SK_MSG, A.SK_MSG_VERDICT, 0),
    ("lirc_mode2", P.LIRC_MODE2, A.LIRC_MODE2, 0),
    ("flow_dissector", P.FLOW_DISSECTOR, A.FLOW_DISSECTOR, 0),
    ("cgroup_skb/ingress", P.CGROUP_SKB, A.CGROUP_INET_INGRESS, 0),
    ("cgroup_skb/egress", P.CGROUP_SKB, A.CGROUP_INET_EGRESS, 0),
    ("cgroup/skb", P.CGROUP_SKB, None, 0),
    ("cgroup/sock_create", P.CGROUP_SOCK, A.CGROUP_INET_SOCK_CREATE, 0),
    ("cgroup/sock_release", P.CGROUP_SOCK, A.CGROUP_INET_SOCK_RELEASE, 0),
    ("cgroup/sock", P.CGROUP_SOCK, A.CGROUP_INET_SOCK_CREATE, 0),
    ("cgroup/post_bind4", P.CGROUP_SOCK, A.CGROUP_INET4_POST_BIND, 0),
    ("cgroup/post_bind6", P.CGROUP_SOCK, A.CGROUP_INET6_POST_BIND, 0),
    ("cgroup/bind4", P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_BIND, 0),
    ("cgroup/bind6", P.CGROUP_SOCK_ADDR, A.CGROUP_INET6_BIND, 0),
    ("cgroup/connect4", P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_CONNECT, 0),
    ("cgroup/connect6", P.CGROUP_SOCK_ADDR, A.CGROUP_INET6_CONNECT, 0),
    ("cgroup/sendmsg4", P.CGROUP_SOCK_ADDR, A.CGROUP_UDP4_SENDMSG, 0),
    ("cgroup/sendmsg6", P.CGROUP_SOCK_ADDR, A.CGROUP_UDP6_SENDMSG, 0),
    ("cgroup/recvmsg4", P.CGROUP_SOCK_ADDR, A.CGROUP_UDP4_RECVMSG, 0),
    ("cgroup/recvmsg6", P.CGROUP_SOCK_ADDR, A.CGROUP_UDP6_RECVMSG, 0),
    ("cgroup/getpeername4", P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_GETPEERNAME, 0),
    ("cgroup/getpeername6", P.CGROUP_SOCK_ADDR, A.CGROUP_INET6_GETPEERNAME, 0),
    ("cgroup/getsockname4", P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_GETSOCKNAME, 0),
    ("cgroup/getsockname6", P.CGROUP_SOCK_ADDR, A.CGROUP_INET6_GETSOCKNAME, 0),
    ("cgroup/sysctl", P.CGROUP_SYSCTL, A.CGROUP_SYSCTL, 0),
    ("cgroup/getsockopt", P.CGROUP_SOCKOPT, A.CGROUP_GETSOCKOPT, 0),
    ("cgroup/setsockopt", P.CGROUP_SOCKOPT, A.CGROUP_SETSOCKOPT, 0),
    ("cgroup/dev", P.CGROUP_DEVICE, A.CGROUP_DEVICE, 0),
    ("struct_ops+", P.STRUCT_OPS, None, 0),
    ("sk_lookup", P.SK_LOOKUP, A.SK_LOOKUP, 0),
)


@dataclass(frozen=True)
class SectionKind:
    """What a program section name means."""

    type: ProgType
    expected_attach_type: AttachType | int | None = None
    flags: int = 0
    attach_to: str = ""


def _match(pattern: str, name: str) -> str | None:
    """The attach target when ``name`` matches ``pattern`` ('' if none), else None."""
    if pattern.endswith("+"):
        base = pattern[:-1]
        if name == base:
            return ""
        if name.startswith(base + "/"):
            return name[len(base) + 1:]
        return None
    return "" if name == pattern else None


def classify_section(name: str, legacy: bool = False) -> SectionKind:
    """The program type, attach type and flags for a section name.

    Unknown names give ``ProgType.UNSPEC`` (parsing still works; loading refuses them, as
    libbpf 1.x does: "failed to guess program type from ELF section").  ``legacy`` adds
    libbpf 0.x's last try of matching a bare prefix (``xdp_prog`` → XDP).
    """
    for pattern, ptype, attach, flags in SECTION_TABLE:
        target = _match(pattern, name)
        if target is not None:
            return SectionKind(ptype, attach, flags, target)
    if legacy:
        for pattern, ptype, attach, flags in SECTION_TABLE:
            base = pattern.rstrip("+")
            if "/" not in base and "." not in base and name.startswith(base):
                return SectionKind(ptype, attach, flags, "")
    return SectionKind(ProgType.UNSPEC)


def section_names() -> str:
    """The supported section names, as libbpf lists them when it cannot guess a type."""
    return " ".join(p for p, *_ in SECTION_TABLE)
