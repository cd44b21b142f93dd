import sys

from echoconf.cli import main

sys.exit(main())
