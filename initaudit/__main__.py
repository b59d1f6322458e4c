import sys

from initaudit.cli.entry import main

sys.exit(main())
