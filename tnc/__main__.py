import sys

try:
    from tnc.cli.main import main
except KeyboardInterrupt:  # Ctrl-C while the command starts
    sys.exit(130)

sys.exit(main())
