"""relations_etl: turn raw lists of visits, memberships and relations into a validated warehouse."""

from relations_etl.errors import RelationsEtlError
from relations_etl.settings import Settings

__all__ = ["RelationsEtlError", "Settings"]
__version__ = "0.1.0"
