import sys

from pyxdp.cli import main

sys.exit(main())
