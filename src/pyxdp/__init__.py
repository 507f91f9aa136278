"""pyxdp: program the Linux kernel's eXpress Data Path from Python.

Pure layers (no kernel needed): :mod:`pyxdp.isa`, :mod:`pyxdp.asm`, :mod:`pyxdp.emu`,
:mod:`pyxdp.maps`, :mod:`pyxdp.packets`. Kernel layer: :mod:`pyxdp.kernel`.
Nothing touches the kernel at import time.
"""

__version__ = "0.1.0"
