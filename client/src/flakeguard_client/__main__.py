import sys

from flakeguard_client.cli import main

sys.exit(main())
