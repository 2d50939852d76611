"""``python -m streamtune.controller``: a controller daemon (active, or standby until the lease lapses).

It reaches Kafka, Ray and the registry through ``STREAMTUNE_*`` settings (as ``streamtune up`` sets them),
serves the HTTP API on ``STREAMTUNE_API_HOST:STREAMTUNE_API_PORT`` whether active or standby, joins Ray only
when serving or a sweep needs it, and stops on SIGTERM, releasing its lease.
"""

from __future__ import annotations

import logging
import signal
import sys

from streamtune.config.settings import Settings
from streamtune.errors import StreamtuneError


def main() -> int:
    """Loop until SIGTERM."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("streamtune.controller")
    settings = Settings.from_env()
    from streamtune.runtime.ray import use_ray_token

    use_ray_token(settings)  # before anything imports ray: the Jobs API client needs it too
    from streamtune.api.server import start_api
    from streamtune.controller.loop import Controller

    ctrl = Controller(settings)
    try:
        api = start_api(settings, is_active=lambda: ctrl.active, events=ctrl.events)
    except StreamtuneError as exc:
        log.error("the API could not start: %s", exc)
        return 1
    log.info("controller %s started (standby until it holds the lease); API on %s", ctrl.holder, api.url)
    signal.signal(signal.SIGTERM, lambda *_: ctrl.request_stop())
    try:
        ctrl.run_forever()
    except KeyboardInterrupt:
        pass
    ctrl.stop()
    api.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
