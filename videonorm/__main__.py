import sys

from videonorm.cli import main

sys.exit(main())
