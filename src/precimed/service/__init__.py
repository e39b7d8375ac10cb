"""The precimed service (layer 7): a FastAPI app over the model registry, with tokens, roles, an audit trail and
a database. Nothing in precimed imports it; `precimed serve` and the tests create it with `create_app`.
"""

from precimed.service.app import create_app
from precimed.service.settings import ServiceSettings

__all__ = ["ServiceSettings", "create_app"]
