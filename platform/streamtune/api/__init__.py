"""The HTTP control API: the control-plane interface behind FastAPI, with bearer tokens and request limits.

Every controller (the active one and standbys) serves it: reads come from the registry, changes are appended
as commands for the active controller. ``create_app`` builds the app; ``ApiServer`` runs it in a thread.
"""

from streamtune.api.app import create_app
from streamtune.api.auth import hash_token, new_token
from streamtune.api.server import ApiServer

__all__ = ["ApiServer", "create_app", "hash_token", "new_token"]
