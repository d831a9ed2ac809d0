import sys

from scalex_scvi._cli import main

sys.exit(main())
