"""Set-based writes for the batch paths (the billing run): one statement per table per chunk of rows.

Why not bulk_create / bulk_update: on the billing run's hot path Django spent most of its time preparing every value
of every row in Python (bulk_create's compiler, then psycopg quoting thousands of literals and arrays one element
at a time; bulk_update builds a CASE expression per field). On PostgreSQL these helpers serialise the rows once with
the C JSON encoder and let the server turn them into typed rows of the table:
`INSERT … SELECT … FROM json_populate_recordset(NULL::table, %s)` and `UPDATE … FROM json_populate_recordset(…)`.
Elsewhere (SQLite: tests, the demo) they fall back to bulk_create and a parameterised executemany.

They write exactly the columns the ORM would (auto_now / auto_now_add are filled in as `save()` would). No model
`save()` runs, so use them only where `save()` adds nothing the caller needs (as with bulk_create).
"""

import json
from collections.abc import Callable, Sequence

from django.db import connection, models


def _is_postgresql() -> bool:
    return connection.vendor == "postgresql"


def _iso(value):
    return None if value is None else value.isoformat()


def _text(value):
    return None if value is None else str(value)


def _converter(field: models.Field) -> Callable | None:
    """How a Python value of `field` becomes JSON that PostgreSQL's record input reads back as the same value."""
    if isinstance(field, models.DateField):  # also DateTimeField: aware datetimes keep their offset
        return _iso
    if isinstance(field, models.DecimalField):
        return _text  # exact: never through a float
    if isinstance(field, models.FileField):
        return field.get_prep_value
    if isinstance(field, models.JSONField) and field.encoder is not None:
        encoder = field.encoder
        return lambda value: None if value is None else json.loads(json.dumps(value, cls=encoder))
    return None  # int, str (and TextChoices), bool, None, JSON-native values: as they are


def _rows_json(fields: Sequence[models.Field], objs: Sequence[models.Model], *, with_pk: bool = False) -> str:
    columns, names = [], []
    if with_pk:
        pk = objs[0]._meta.pk
        columns.append([obj.pk for obj in objs])
        names.append(pk.column)
    for field in fields:
        values = [getattr(obj, field.attname) for obj in objs]
        convert = _converter(field)
        columns.append(values if convert is None else [convert(value) for value in values])
        names.append(field.column)
    return json.dumps([dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)])


def _fill_auto_now(fields: Sequence[models.Field], objs: Sequence[models.Model], *, add: bool) -> None:
    for field in fields:
        if isinstance(field, models.DateField) and (field.auto_now or (add and field.auto_now_add)):
            for obj in objs:
                field.pre_save(obj, add)


def bulk_insert(model: type[models.Model], objs: Sequence[models.Model], *, returning: bool = False) -> None:
    """INSERT the unsaved instances `objs` of `model` in one statement; with `returning`, set their primary keys
    (in order, as bulk_create does)."""
    if not objs:
        return
    if not _is_postgresql():
        model.objects.bulk_create(objs)
        return
    meta = model._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    _fill_auto_now(fields, objs, add=True)
    quote = connection.ops.quote_name
    table = quote(meta.db_table)
    columns = ", ".join(quote(f.column) for f in fields)
    sql = f"INSERT INTO {table} ({columns}) SELECT {columns} FROM json_populate_recordset(NULL::{table}, %s)"
    if returning:
        sql += f" RETURNING {quote(meta.pk.column)}"
    with connection.cursor() as cursor:
        cursor.execute(sql, [_rows_json(fields, objs)])
        if returning:
            for obj, (pk,) in zip(objs, cursor.fetchall(), strict=True):
                obj.pk = pk
                obj._state.adding, obj._state.db = False, connection.alias


def bulk_update(model: type[models.Model], objs: Sequence[models.Model], field_names: Sequence[str]) -> None:
    """UPDATE `field_names` (plus any auto_now field) of each saved object by primary key, in one statement."""
    if not objs:
        return
    meta = model._meta
    fields = [meta.get_field(name) for name in field_names]
    fields += [f for f in meta.concrete_fields if getattr(f, "auto_now", False) and f not in fields]
    _fill_auto_now(fields, objs, add=False)
    quote = connection.ops.quote_name
    table, pk = quote(meta.db_table), quote(meta.pk.column)
    if not _is_postgresql():
        assignments = ", ".join(f"{quote(f.column)} = %s" for f in fields)
        rows = [[f.get_db_prep_save(getattr(obj, f.attname), connection) for f in fields] + [obj.pk] for obj in objs]
        with connection.cursor() as cursor:
            cursor.executemany(f"UPDATE {table} SET {assignments} WHERE {pk} = %s", rows)
        return
    assignments = ", ".join(f"{quote(f.column)} = v.{quote(f.column)}" for f in fields)
    sql = (
        f"UPDATE {table} SET {assignments} FROM json_populate_recordset(NULL::{table}, %s) AS v "
        f"WHERE {table}.{pk} = v.{pk}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [_rows_json(fields, objs, with_pk=True)])
