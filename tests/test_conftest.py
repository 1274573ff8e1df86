"""The suite's own shortcuts give what the real parts give."""

import sqlite3

import sqlite_utils
from llm import migrations


def schema_and_rows(path):
    db = sqlite3.connect(path)
    master = sorted(db.execute("select type, name, tbl_name, sql from sqlite_master"))
    rows = {
        table: sorted(map(repr, db.execute(f"select * from [{table}]")))
        for (table,) in db.execute("select name from sqlite_master where type = 'table'")
    }
    rows["_llm_migrations"] = [name for (name,) in db.execute("select name from _llm_migrations")]
    db.close()
    return master, rows  # the names of llm's migrations, not when they ran


def test_a_new_logs_db_gets_what_llms_own_migrations_make(
    tmp_path, llm_schema_copied_into_new_logs_dbs
):
    real_migrate = llm_schema_copied_into_new_logs_dbs
    assert migrations.migrate is not real_migrate  # the copy is in use
    copied, real = tmp_path / "copied.db", tmp_path / "real.db"
    migrations.migrate(sqlite_utils.Database(copied))
    real_migrate(sqlite_utils.Database(real))
    assert schema_and_rows(copied) == schema_and_rows(real)
    migrations.migrate(sqlite_utils.Database(copied))  # migrated: llm's migrate, a no-op
    assert schema_and_rows(copied) == schema_and_rows(real)
