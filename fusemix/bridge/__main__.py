import sys

from .cli import set_audio_mean_main

try:
    sys.exit(set_audio_mean_main())
except (ValueError, OSError) as e:  # a user's mistake: the message, not a traceback
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
