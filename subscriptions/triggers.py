"""DDL of the customer data-version triggers (issue 18; the table is `subscriptions.models.CustomerDataChange`).

Each watched table gets AFTER INSERT, UPDATE and DELETE triggers that append one `subscriptions_customerdatachange`
row per customer whose data the statement changed, in the same transaction. A table names its customer with a
*resolver*: a SELECT of a `customer_id` column from one row, written against the placeholder `{row}` (the new or the
old row), e.g. `SELECT {row}.customer_id AS customer_id` or, for a table that reaches the customer through its
subscription, `SELECT s.customer_id FROM subscriptions_subscription s WHERE s.id = {row}.subscription_id`. An UPDATE
records the customers of both the old and the new row (a row moved to another customer changes both).

- SQLite (the zero-setup default): row-level triggers (SQLite has no others). Writers are serialised by the database
  lock, so the ids are in commit order.
- PostgreSQL: statement-level triggers over the transition tables, one row per distinct customer per statement, so
  a set-based billing run's `bulk_create()` of 10,000 lines adds a row per customer, not per line. No row is locked:
  the table is append-only (the customer row is never updated by a trigger, so no write waits on another's
  transaction and no trigger can deadlock).

Migrations call these functions; a change here must stay valid for the migrations that already ran (add a new
function rather than change what an existing one emits).
"""

CHANGE_TABLE = "subscriptions_customerdatachange"

DIRECT = "SELECT {row}.customer_id AS customer_id"
GLOBAL = "SELECT 0 AS customer_id"


def via(table: str, column: str, *, key: str = "id") -> str:
    """The resolver of a table reaching the customer through `column` → `table`.`key` (that row's `customer_id`)."""
    return f"SELECT p.customer_id AS customer_id FROM {table} p WHERE p.{key} = {{row}}.{column}"


def _name(table: str, suffix: str) -> str:
    return f"cdc_{table}_{suffix}"


def sqlite_create(table: str, resolver: str) -> list[str]:
    def body(*rows: str) -> str:
        select = " UNION ".join(resolver.format(row=row) for row in rows)
        return (
            f"INSERT INTO {CHANGE_TABLE} (customer_id) "
            f"SELECT customer_id FROM ({select}) WHERE customer_id IS NOT NULL;"
        )

    return [
        f"CREATE TRIGGER {_name(table, 'ins')} AFTER INSERT ON {table} FOR EACH ROW BEGIN {body('NEW')} END;",
        f"CREATE TRIGGER {_name(table, 'upd')} AFTER UPDATE ON {table} FOR EACH ROW BEGIN {body('NEW', 'OLD')} END;",
        f"CREATE TRIGGER {_name(table, 'del')} AFTER DELETE ON {table} FOR EACH ROW BEGIN {body('OLD')} END;",
    ]


def sqlite_drop(table: str) -> list[str]:
    return [f"DROP TRIGGER IF EXISTS {_name(table, suffix)};" for suffix in ("ins", "upd", "del")]


def postgresql_create(table: str, resolver: str) -> list[str]:
    select = resolver.format(row="r")

    def insert(rows: str) -> str:
        return (
            f"INSERT INTO {CHANGE_TABLE} (customer_id) SELECT DISTINCT x.customer_id FROM {rows} r "
            f"CROSS JOIN LATERAL ({select}) x WHERE x.customer_id IS NOT NULL;"
        )

    function = _name(table, "fn")
    return [
        f"""CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        {insert("cdc_new")}
    ELSIF TG_OP = 'UPDATE' THEN
        {insert("(SELECT * FROM cdc_new UNION ALL SELECT * FROM cdc_old)")}
    ELSE
        {insert("cdc_old")}
    END IF;
    RETURN NULL;
END
$$;""",
        f"CREATE TRIGGER {_name(table, 'ins')} AFTER INSERT ON {table} REFERENCING NEW TABLE AS cdc_new "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {function}();",
        f"CREATE TRIGGER {_name(table, 'upd')} AFTER UPDATE ON {table} "
        f"REFERENCING OLD TABLE AS cdc_old NEW TABLE AS cdc_new FOR EACH STATEMENT EXECUTE FUNCTION {function}();",
        f"CREATE TRIGGER {_name(table, 'del')} AFTER DELETE ON {table} REFERENCING OLD TABLE AS cdc_old "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {function}();",
    ]


def postgresql_drop(table: str) -> list[str]:
    return [f"DROP TRIGGER IF EXISTS {_name(table, suffix)} ON {table};" for suffix in ("ins", "upd", "del")] + [
        f"DROP FUNCTION IF EXISTS {_name(table, 'fn')}();"
    ]


def create_triggers(watched: dict[str, str]):
    """A `RunPython` pair creating (and dropping) the triggers of `watched` ({table: resolver}) for the database in
    use; another vendor gets none (and its pages would never see a new version: supported are SQLite and PostgreSQL,
    the two Continuum runs on)."""

    def statements(schema_editor, create: bool) -> list[str]:
        vendor = schema_editor.connection.vendor
        if vendor == "sqlite":
            make, drop = sqlite_create, sqlite_drop
        elif vendor == "postgresql":
            make, drop = postgresql_create, postgresql_drop
        else:
            raise RuntimeError(f"customer data-version triggers: unsupported database {vendor!r}")
        out: list[str] = []
        for table, resolver in watched.items():
            out += make(table, resolver) if create else drop(table)
        return out

    def forwards(apps, schema_editor):
        for sql in statements(schema_editor, True):
            schema_editor.execute(sql)

    def backwards(apps, schema_editor):
        for sql in statements(schema_editor, False):
            schema_editor.execute(sql)

    return forwards, backwards
