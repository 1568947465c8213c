"""The durable ledger (SQLAlchemy Core): SQLite by default, PostgreSQL in production."""

from .engine import LATEST, current_version, make_engine, migrate
from .repository import Ledger, new_id

__all__ = ["LATEST", "Ledger", "current_version", "make_engine", "migrate", "new_id"]
