"""pyxdp's benchmarks: each measures pyxdp and its reference side by side in one run.

Every benchmark is a module here, runnable as ``python -m pyxdp.bench.<name>`` (most need
root), on the shared :mod:`pyxdp.bench.harness` (alternating rounds, median and spread,
verdicts, results writer).  Results go to ``bench/results/<name>.json`` and ``.md``.

============================  ===========================================================
``xdp_table`` (pyxdp bench)   TC vs XDP drop/TX rates on a veth bed; C generator, xdp-loader
``emu_speed``                 emulator speed vs the kernel's BPF_PROG_TEST_RUN
``emu_features``              map-in-map, for_each_map_elem, frags: emulator vs test run
``map_ops``                   map operations vs a C program using libbpf
``load_speed``                object load time vs ``bpftool prog loadall``
``compiler_quality``          the compiler's code vs clang -O2 on the same programs
``filter_speed``              the filter app vs ``xdp-filter``
``chain_speed``               chains of 1/2/4 stages vs the programs alone; capture on/off
``faults``                    the filter under kill -9, reloads, restart, bucket exhaustion
``afxdp_speed``               AF_XDP rxdrop/txonly/l2fwd vs a C program on libxdp
============================  ===========================================================

The C references are in ``c/`` beside these modules (shipped with the package).
"""
