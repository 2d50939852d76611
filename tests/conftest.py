import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))

from fixtures_kafka import kafka_bootstrap  # noqa: E402, F401
from fixtures_ray import ray_services  # noqa: E402, F401
