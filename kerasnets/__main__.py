import sys

from kerasnets.cli import main

sys.exit(main())
