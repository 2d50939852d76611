"""``python -m streamtune.controller``: run the controller as a daemon against services from ``streamtune up``."""

from __future__ import annotations

import logging
import signal
import sys

from streamtune.config.settings import Settings
from streamtune.controller.loop import Controller
from streamtune.dev.ray import LocalRay
from streamtune.registry import open_registry
from streamtune.sweeps.jobs_api import RayJobRunner


def main() -> int:
    """Join the running Ray head and Kafka, then loop until SIGTERM."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env()
    if settings.ray_address is None:
        settings = settings.model_copy(update={"ray_address": f"127.0.0.1:{settings.ray_port}"})
    ray_ = LocalRay(settings)
    ray_.start()
    bootstrap = settings.kafka_bootstrap or f"127.0.0.1:{settings.kafka_port}"
    ctrl = Controller(settings, open_registry(settings.registry_url), bootstrap=bootstrap,
                      jobs=RayJobRunner(ray_.jobs_url))
    signal.signal(signal.SIGTERM, lambda *_: ctrl._stop.set())
    try:
        ctrl.run_forever()
    except KeyboardInterrupt:
        pass
    ctrl.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
