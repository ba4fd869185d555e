#!/usr/bin/env python
"""The seed system's command line for DSP-FWA and Capsule-Forensics-v2 region models.

    python deepfakes_facial_regions.py --detector {DSP-FWA,Capsule} --region R --ddbb D \
        [--image PATH...] [--models DIR] [--save FIG.png] [--json] [--pre-segmented]
"""

from dffr.seed_cli import seed_main

if __name__ == "__main__":
    seed_main(("DSP-FWA", "Capsule"))
