#!/usr/bin/env python
"""The seed system's command line for the Keras Xception region models.

    python deepfakes_facial_regions_xception.py --region R --ddbb D \
        [--image PATH...] [--models DIR] [--save FIG.png] [--json] [--pre-segmented]
"""

from dffr.seed_cli import seed_main

if __name__ == "__main__":
    seed_main(("Xception",))
