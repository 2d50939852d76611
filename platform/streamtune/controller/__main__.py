"""``python -m streamtune.controller``: run a controller daemon (active, or standby until the lease lapses).

It reaches Kafka, Ray and the registry through ``STREAMTUNE_*`` settings (as ``streamtune up`` sets them),
joins Ray only when serving or a sweep needs it, and stops on SIGTERM, releasing its lease.
"""

from __future__ import annotations

import logging
import signal
import sys

from streamtune.config.settings import Settings
from streamtune.controller.loop import Controller


def main() -> int:
    """Loop until SIGTERM."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ctrl = Controller(Settings.from_env())
    logging.getLogger(__name__).info("controller %s started (standby until it holds the lease)", ctrl.holder)
    signal.signal(signal.SIGTERM, lambda *_: ctrl._stop.set())
    try:
        ctrl.run_forever()
    except KeyboardInterrupt:
        pass
    ctrl.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
