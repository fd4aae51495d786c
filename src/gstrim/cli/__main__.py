import sys

from gstrim.cli import main

sys.exit(main())
