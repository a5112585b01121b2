"""The embedded broker: kombu's SQLAlchemy transport, with a polling interval of our choosing.

kombu hands every transport option to SQLAlchemy's create_engine, which refuses `polling_interval`; this transport
keeps that one option for kombu's poller and gives the rest to the engine.
"""

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport.sqlalchemy import Channel as SqlaChannel
from kombu.transport.sqlalchemy import Transport as SqlaTransport
from sqlalchemy import create_engine, event

# The broker file is shared by the web process (publishing), the worker and beat, as the Django database is: WAL and
# a busy timeout so that one process's poll or publish waits for another's instead of failing "database is locked".
SQLITE_BUSY_TIMEOUT_SECONDS = 30

NON_ENGINE_OPTIONS = {"polling_interval"}


class Channel(SqlaChannel):
    def _engine_from_config(self):
        conninfo = self.connection.client
        options = {
            key: value
            for key, value in conninfo.transport_options.items()
            if key not in NON_ENGINE_OPTIONS
            and key
            not in {
                "queue_tablename",
                "message_tablename",
                "callback",
                "errback",
                "max_retries",
                "interval_start",
                "interval_step",
                "interval_max",
                "retry_errors",
            }
        }
        if conninfo.hostname.startswith("sqlite"):
            connect_args = dict(options.pop("connect_args", {}) or {})
            connect_args.setdefault("timeout", SQLITE_BUSY_TIMEOUT_SECONDS)
            engine = create_engine(conninfo.hostname, connect_args=connect_args, **options)
            event.listen(engine, "connect", _sqlite_on_connect)
            return engine
        return create_engine(conninfo.hostname, **options)


def _sqlite_on_connect(dbapi_connection, connection_record) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


class Transport(SqlaTransport):
    Channel = Channel


def register() -> None:
    """Route `sqla+…` broker URLs to this transport."""
    TRANSPORT_ALIASES["sqla"] = "portal.broker:Transport"
    TRANSPORT_ALIASES["sqlalchemy"] = "portal.broker:Transport"
