import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))

from fixtures_kafka import kafka_bootstrap  # noqa: E402, F401
from fixtures_postgres import postgres_server_url, postgres_url  # noqa: E402, F401
from fixtures_ray import ray_services  # noqa: E402, F401
from fixtures_s3 import s3_bucket  # noqa: E402, F401

# tests/assets holds job packages that reach Ray workers only through runtime_env; collecting them (doctests)
# would import them into the driver and hide a missing py_modules.
collect_ignore_glob = ["assets/*"]
