import sys

from tnc.cli.main import main

sys.exit(main())
