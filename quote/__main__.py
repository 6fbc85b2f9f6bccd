import sys

from quote.cli import main

sys.exit(main())
