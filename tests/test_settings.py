"""Settings (market/settings.py): one typed object from command-line options and a TOML file, every
key documented with its default, the environment only for credentials, URLs and paths, and no way
for a deployer to weaken password hashing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from market import settings
from market.settings import AccountSettings, DispatchSettings, ServerSettings, Settings, SettingsError, WebSettings

REPO = Path(__file__).resolve().parent.parent
OPERATIONS = (REPO / "docs" / "operations.md").read_text()


def _section(title: str) -> str:
    return OPERATIONS.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def _all_keys():
    yield None, settings.fields_of(Settings)
    for name, cls in settings.SECTIONS.items():
        yield name, settings.fields_of(cls)


# -- the file -----------------------------------------------------------------------------------


def test_a_config_file_sets_every_section_and_leaves_the_rest_at_their_defaults():
    got = settings.from_mapping(
        {
            "db": "sqlite:/srv/m.sqlite",
            "server": {"rpc": "tcp:7999", "public-url": "https://m.example.org"},
            "dispatch": {"window": 0.5, "threshold": 4, "probe-interval": "60", "reap-interval": 1},
            "accounts": {"starting-grant": "12.50"},
            "web": {"report-seconds": 5, "signups-per-address": 2},
        }
    )
    assert got == Settings(
        db="sqlite:/srv/m.sqlite",
        server=ServerSettings(rpc="tcp:7999", public_url="https://m.example.org"),
        dispatch=DispatchSettings(window=0.5, threshold=4, probe_interval=60.0, reap_interval=1.0),
        accounts=AccountSettings(starting_grant=1250),
        web=WebSettings(report_seconds=5.0, signups_per_address=2),
    )
    assert settings.from_mapping({}) == Settings()


@pytest.mark.parametrize(
    "data, words",
    [
        (
            {"windw": 1},
            "unknown key 'windw' (known: db, [server], [dispatch], [accounts], [web], [offload], [connections])",
        ),
        ({"web": {"report-seconds": 0}}, "[web] report-seconds: 0 must be more than 0"),
        ({"web": {"signups-per-email": 1.5}}, "1.5 is not a whole number"),
        ({"dispatch": {"windw": 1}}, "unknown key 'windw' in [dispatch]"),
        ({"dispatch": 3}, "dispatch must be a section"),
        ({"dispatch": {"window": 0}}, "[dispatch] window: 0 must be more than 0"),
        ({"dispatch": {"window": float("nan")}}, "must be more than 0"),
        ({"dispatch": {"window": True}}, "True is not a number"),
        ({"dispatch": {"threshold": 2.5}}, "2.5 is not a whole number"),
        ({"dispatch": {"min-slice": 10, "max-slice": 5}}, "min-slice (10) is larger than max-slice (5)"),
        ({"accounts": {"starting-grant": 100.0}}, 'as a string like "100.00"'),
        ({"accounts": {"starting-grant": "1.234"}}, "2 decimals"),
        ({"server": {"rpc": ""}}, "rpc: '' is not a non-empty string"),
    ],
)
def test_a_wrong_config_file_is_one_line_that_names_the_key(data, words):
    with pytest.raises(SettingsError) as e:
        settings.from_mapping(data, "m.toml")
    assert words in str(e.value) and str(e.value).startswith("m.toml: ") and "\n" not in str(e.value)


def test_an_unreadable_or_malformed_file_is_refused_in_plain_words(tmp_path):
    with pytest.raises(SettingsError, match="cannot read the config file"):
        settings.load(str(tmp_path / "missing.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text("[dispatch\nwindow = 1\n")
    with pytest.raises(SettingsError, match="is not valid TOML"):
        settings.load(str(bad))


def test_the_documented_example_file_loads():
    example = _section("Settings").split("```toml\n", 1)[1].split("```", 1)[0]
    import tomllib

    got = settings.from_mapping(tomllib.loads(example))
    assert got.server.web == "tcp:8080" and got.accounts.starting_grant == 10_000


# -- twistd market's options --------------------------------------------------------------------


def _twistd_options(*argv):
    from market.tap import Options

    options = Options()
    options.parseOptions(list(argv))
    return options.settings


def test_twistd_market_without_options_has_the_documented_defaults():
    assert _twistd_options() == Settings()
    assert Settings().dispatch == DispatchSettings(
        window=2.0,
        threshold=16,
        probe_interval=1800.0,
        min_slice=1.0,
        max_slice=300.0,
        default_slice=60.0,
        grace=10.0,
        test_job_size=60,
        reap_interval=5.0,
    )
    assert Settings().server == ServerSettings(rpc="tcp:7080", web=None, smtp=None, outbox="var/outbox")
    assert Settings().accounts.starting_grant == 10_000


def test_twistd_market_options_keep_their_names():
    got = _twistd_options(
        *("--db", "sqlite:x.sqlite", "--rpc", "tcp:1", "--web", "tcp:2", "--window", "0.5", "--threshold", "3"),
        *("--probe-interval", "9", "--min-slice", "0.2", "--max-slice", "30", "--grace", "0.3"),
        *("--test-job-size", "40", "--smtp", "h:25", "--outbox", "o", "--public-url", "https://x"),
    )
    assert got.db == "sqlite:x.sqlite"
    assert got.server == ServerSettings("tcp:1", "tcp:2", "h:25", "o", "https://x")
    assert got.dispatch == DispatchSettings(0.5, 3, 9.0, 0.2, 30.0, 60.0, 0.3, 40, 5.0)


def test_the_command_line_wins_over_the_file_and_the_file_over_the_default(tmp_path):
    config = tmp_path / "m.toml"
    config.write_text('db = "sqlite:file.sqlite"\n[dispatch]\nwindow = 7\ngrace = 3\n[accounts]\nstarting-grant = 5\n')
    got = _twistd_options("--config", str(config), "--window", "0.5", "--starting-grant", "1.00")
    assert got.db == "sqlite:file.sqlite"
    assert (got.dispatch.window, got.dispatch.grace, got.dispatch.threshold) == (0.5, 3, 16)
    assert got.accounts.starting_grant == 100


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--window", "abc"], "--window: 'abc' is not a number"),
        (["--threshold", "0"], "--threshold: '0' must be more than 0"),
        (["--min-slice", "5", "--max-slice", "2"], "min-slice (5) is larger than max-slice (2)"),
        (["--config", "/nonexistent/m.toml"], "cannot read the config file /nonexistent/m.toml"),
    ],
)
def test_twistd_market_refuses_bad_options_in_one_line(argv, words):
    from twisted.python import usage

    with pytest.raises(usage.UsageError, match=re.escape(words)):
        _twistd_options(*argv)


# -- the documentation --------------------------------------------------------------------------


def test_every_key_is_documented_with_its_section_and_default():
    table = _section("Settings")
    rows = {m[0]: m[1:] for m in re.findall(r"^\| `([a-z-]+)` \| ([^|]+) \| ([^|]+) \|", table, re.M)}
    for section, fields in _all_keys():
        for f in fields:
            key = settings.key_of(f)
            assert key in rows, f"docs/operations.md has no row for {key}"
            where, default = (cell.strip() for cell in rows[key])
            assert where == ("(top)" if section is None else f"`[{section}]`"), key
            if f.default is not None:
                assert f.metadata["show"](f.default) in default, (key, default)
    documented = set(rows)
    assert documented == {settings.key_of(f) for _, fields in _all_keys() for f in fields}


def test_every_setting_is_a_twistd_market_option():
    from market.tap import Options

    names = {p[0] for p in Options.optParameters}
    assert {settings.key_of(f) for _, fields in _all_keys() for f in fields} | {"config"} == names


# -- the environment ----------------------------------------------------------------------------


def _market_names_in_the_product() -> set[str]:
    names = set()
    for path in (REPO / "market").rglob("*.py"):
        names |= set(re.findall(r"\bMARKET_[A-Z_]+\b", path.read_text()))
    return names


def test_the_product_reads_only_the_documented_environment_variables():
    names = _market_names_in_the_product()
    assert names <= set(settings.ENVIRONMENT) | set(settings.RETIRED_ENVIRONMENT), names
    environment = _section("Environment")
    for name in settings.ENVIRONMENT:
        assert f"| `{name}` |" in environment, name
    # and every variable read is one the table keeps: credentials, URLs, paths
    assert "MARKET_STARTING_GRANT" in environment and "MARKET_CHEAP_HASHES" in environment  # as retired


def test_environment_reads_are_only_in_the_entry_points_and_the_places_that_need_their_paths():
    readers = set()
    for path in (REPO / "market").rglob("*.py"):
        text = path.read_text()
        if re.search(r"os\.environ\.get\(|os\.environ\[|os\.getenv\(", text):
            readers.add(str(path.relative_to(REPO)))
    assert readers <= {
        "market/cli.py",  # MARKET_SERVER, MARKET_ACCOUNT, MARKET_TOKEN
        "market/tap.py",  # only to warn about retired variables
        "market/worker/tap.py",  # MARKET_SERVER, MARKET_CLIENT_TOKEN
        "market/store/dburl.py",  # MARKET_DB
        "market/sandbox/staging.py",  # MARKET_SANDBOX_DIR
        "market/sandbox/cgroup.py",  # MARKET_SANDBOX_CGROUP
        "market/sandbox/task.py",  # MARKET_ENVIRONMENTS_DIR
        "market/sandbox/testing.py",  # CI, for the fakes it ships to test suites (fail, not skip, in CI)
        "market/demo.py",  # passes PYTHONPATH on to its children
        "market/tasklet/localrun.py",  # passes the environment on to its children
        "market/offload/pool.py",  # passes PATH and the locale (nothing else) on to its helpers
    }, readers


# -- password hashing ---------------------------------------------------------------------------


def _stored_hash(url: str) -> str:
    from market.store import Database

    db = Database(url)
    try:
        return db.transact(lambda tx: tx.scalar("SELECT password_hash FROM accounts WHERE name = 'alice'"))
    finally:
        db.close()


def _create_alice(command: list[str], url: str, **extra_env) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO), **extra_env)
    r = subprocess.run(
        [*command, "--db", url, "account", "create", "alice", "--email", "a@example.org", "--password-stdin"],
        input="correct horse\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr


def test_no_environment_variable_weakens_password_hashing(tmp_path):
    url = f"sqlite:{tmp_path}/m.sqlite"
    # the product itself, with the variable earlier releases obeyed
    _create_alice([sys.executable, "-m", "market"], url, MARKET_CHEAP_HASHES="1")
    assert "$m=65536,t=3,p=4$" in _stored_hash(url)


def test_the_tests_launcher_makes_hashes_cheap(tmp_path):
    from tests.servers import MARKET

    url = f"sqlite:{tmp_path}/m.sqlite"
    _create_alice(MARKET, url)
    assert "$m=1024,t=1,p=1$" in _stored_hash(url)


def test_the_cli_takes_the_starting_grant_and_the_database_from_its_config_file(tmp_path):
    from tests.servers import MARKET

    url = f"sqlite:{tmp_path}/m.sqlite"
    config = tmp_path / "m.toml"
    config.write_text(f'db = "{url}"\n[accounts]\nstarting-grant = "7.25"\n')
    env = dict(os.environ, PYTHONPATH=str(REPO))

    def market(*args, stdin=None):
        return subprocess.run([*MARKET, *args], input=stdin, capture_output=True, text=True, env=env, timeout=60)

    assert market("db", "init", "--config", str(config)).returncode == 0
    r = market(
        "--config", str(config), "account", "create", "bob", "--email", "b@example.org", "--password-stdin",
        stdin="correct horse\n",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    # the grant is paid when the account is confirmed
    assert market("account", "balance", "bob", "--config", str(config)).stdout.strip() == "0.00"
    assert market("account", "confirm", "bob", "--config", str(config)).returncode == 0
    assert market("account", "balance", "bob", "--config", str(config)).stdout.strip() == "7.25"
    r = market("--config", str(tmp_path / "none.toml"), "account", "list")
    assert r.returncode == 2 and "cannot read the config file" in r.stderr and len(r.stderr.splitlines()) == 1


def test_twistd_market_configures_the_starting_grant_of_new_accounts():
    from market import accounts

    try:
        accounts.configure(AccountSettings(starting_grant=42))
        assert accounts.starting_grant() == 42
    finally:
        accounts.configure(AccountSettings())
    assert accounts.starting_grant() == 10_000


def test_twistd_market_warns_about_variables_earlier_releases_read(monkeypatch):
    from market.tap import _warn_retired_environment

    class Log:
        def __init__(self):
            self.lines = []

        def warn(self, text, **kw):
            self.lines.append(text.format(**kw))

    monkeypatch.setenv("MARKET_STARTING_GRANT", "5.00")
    monkeypatch.delenv("MARKET_CHEAP_HASHES", raising=False)
    log = Log()
    _warn_retired_environment(log)
    assert log.lines == [
        "$MARKET_STARTING_GRANT is no longer read; set starting-grant in the [accounts] section of a --config file"
    ]
