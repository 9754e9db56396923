"""fgsync.toml: discovery, defaults, relative paths, and one exact message per kind of mistake."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from fgsync.config import (
    SCHEMA,
    Config,
    find_config,
    load_config,
    select_functions,
)
from fgsync.config.template import render_init
from fgsync.errors import EXIT_USAGE, ConfigError, UsageError
from tests.conftest import PROJECT_ID, REGION

REPO_ROOT = Path(__file__).resolve().parent.parent
HEADER = f'region = "{REGION}"\nproject_id = "{PROJECT_ID}"\n'
HELLO = '[[function]]\nname = "hello"\nsource = "functions/hello"\n'


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder with functions/hello, and cwd inside it so messages say plain `fgsync.toml`."""
    (tmp_path / "functions" / "hello").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(folder: Path, text: str) -> Path:
    path = folder / "fgsync.toml"
    path.write_text(textwrap.dedent(text))
    return path


def problems(folder: Path, text: str) -> str:
    """Load a config that must fail; returns the error message."""
    with pytest.raises(ConfigError) as info:
        load_config(write(folder, text))
    assert info.value.exit_code == EXIT_USAGE
    return str(info.value)


# --- discovery ---------------------------------------------------------------------------------------------


def test_nearest_config_in_a_parent_is_found(tmp_path: Path) -> None:
    write(tmp_path, HEADER)
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert find_config(None, env={}, cwd=deep) == tmp_path / "fgsync.toml"
    write(tmp_path / "a", HEADER)
    assert find_config(None, env={}, cwd=deep) == tmp_path / "a" / "fgsync.toml"


def test_flag_beats_env_beats_nearest(tmp_path: Path) -> None:
    write(tmp_path, HEADER)
    (tmp_path / "env.toml").write_text(HEADER)
    (tmp_path / "flag.toml").write_text(HEADER)
    env = {"FGSYNC_CONFIG": str(tmp_path / "env.toml")}
    assert find_config("flag.toml", env=env, cwd=tmp_path) == tmp_path / "flag.toml"
    assert find_config(None, env=env, cwd=tmp_path) == tmp_path / "env.toml"
    assert find_config(None, env={"FGSYNC_CONFIG": ""}, cwd=tmp_path) == tmp_path / "fgsync.toml"


def test_missing_explicit_or_env_path_is_named(tmp_path: Path) -> None:
    write(tmp_path, HEADER)
    with pytest.raises(ConfigError, match=r"config file not found: nope\.toml \(from --config\)"):
        find_config("nope.toml", env={}, cwd=tmp_path)
    with pytest.raises(ConfigError, match=r"config file not found: /no/such\.toml \(from \$FGSYNC_CONFIG\)"):
        find_config(None, env={"FGSYNC_CONFIG": "/no/such.toml"}, cwd=tmp_path)
    with pytest.raises(ConfigError, match="is a folder"):
        find_config(str(tmp_path), env={}, cwd=tmp_path)


def test_no_config_anywhere_says_where_it_looked_and_suggests_init(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        find_config(None, env={}, cwd=tmp_path)
    message = str(info.value)
    assert f"no fgsync.toml found in {tmp_path} or any parent folder" in message
    assert "fgsync init" in message


# --- defaults and paths ------------------------------------------------------------------------------------


def test_minimal_config_gets_every_default(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(project, HEADER + HELLO)
    monkeypatch.chdir(project / "functions")  # relative paths follow the file, not the cwd
    config = load_config(path)
    assert isinstance(config, Config)
    assert config.endpoint == "https://functiongraph.cn-north-4.myhuaweicloud.com"
    assert config.iam_endpoint == "https://iam.cn-north-4.myhuaweicloud.com"
    assert config.ca_bundle is None
    assert (config.auth.method, config.auth.user, config.auth.domain) == ("token", None, None)
    assert (config.watch.debounce_ms, config.watch.max_wait_ms, config.watch.poll) == (300, 3000, False)
    (fn,) = config.functions
    assert fn.source == project / "functions" / "hello"
    assert fn.urn == f"urn:fss:cn-north-4:{PROJECT_ID}:function:default:hello:latest"
    assert (fn.package, fn.code_type, fn.code_filename) == ("default", "zip", "index.zip")
    assert (fn.artifact, fn.build, fn.exclude, fn.use_gitignore) == (None, None, (), False)
    assert (fn.depend_version_list, fn.kms_key_id, fn.invoke_event) == (None, None, None)
    assert (config.request_timeout_s, fn.build_timeout_s) == (60.0, 600.0)
    assert fn.dependencies == "off" and not fn.has_dependencies


def test_every_key_set(project: Path) -> None:
    (project / "certs").mkdir()
    (project / "certs" / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    config = load_config(
        write(
            project,
            f"""\
        region = "ap-southeast-3"
        project_id = "{PROJECT_ID}"
        endpoint = "http://127.0.0.1:8808/"
        iam_endpoint = "http://127.0.0.1:8808"
        ca_bundle = "certs/ca.pem"
        request_timeout_s = 2.5
        [auth]
        method = "aksk"
        user = "dev-user"
        domain = "my-account"
        [watch]
        debounce_ms = 50
        max_wait_ms = 500
        poll = true
        [[function]]
        name = "hello"
        source = "functions/hello"
        package = "shop"
        code_filename = "code.zip"
        build = "make"
        exclude = ["tests/", "*.md"]
        use_gitignore = true
        depend_version_list = ["dep-1", "dep-2"]
        kms_key_id = "kms-123"
        invoke_event = "events/hello.json"
        build_timeout_s = 900
        dependencies = ["node_modules/", "/vendor/", "!vendor/local/"]
        """,
        )
    )
    assert config.endpoint == "http://127.0.0.1:8808"  # trailing slash stripped
    assert config.iam_endpoint == "http://127.0.0.1:8808"
    assert config.ca_bundle == project / "certs" / "ca.pem"
    assert config.auth.method == "aksk"
    assert (config.watch.debounce_ms, config.watch.max_wait_ms, config.watch.poll) == (50, 500, True)
    (fn,) = config.functions
    assert fn.urn == f"urn:fss:ap-southeast-3:{PROJECT_ID}:function:shop:hello:latest"
    assert (fn.package, fn.code_filename, fn.build) == ("shop", "code.zip", "make")
    assert (fn.exclude, fn.use_gitignore, fn.kms_key_id) == (("tests/", "*.md"), True, "kms-123")
    assert fn.depend_version_list == ("dep-1", "dep-2")
    assert fn.invoke_event == project / "events" / "hello.json"  # stored, not checked until `invoke` uses it
    assert (config.request_timeout_s, fn.build_timeout_s) == (2.5, 900.0)
    assert isinstance(fn.build_timeout_s, float)
    assert fn.dependencies == ("node_modules/", "/vendor/", "!vendor/local/") and fn.has_dependencies


@pytest.mark.parametrize(
    ("region", "iam"),
    [
        ("eu-west-101", "https://iam.eu-west-101.myhuaweicloud.eu"),
        ("xx-newland-7", "https://iam.xx-newland-7.myhuaweicloud.com"),  # unknown but well formed
    ],
)
def test_iam_endpoint_defaults(project: Path, region: str, iam: str) -> None:
    config = load_config(write(project, f'region = "{region}"\nproject_id = "{PROJECT_ID}"\n' + HELLO))
    assert config.iam_endpoint == iam
    assert config.endpoint == f"https://functiongraph.{region}.myhuaweicloud.com"


def test_jar_function_defaults_code_filename_to_the_artifact(project: Path) -> None:
    config = load_config(write(project, HEADER + HELLO + 'code_type = "jar"\nartifact = "target/app.jar"\n'))
    (fn,) = config.functions
    assert (fn.code_type, fn.code_filename) == ("jar", "app.jar")
    assert fn.artifact == project / "target" / "app.jar"  # built later by `build`: need not exist yet


def test_urn_without_version_gets_latest_and_package_follows_it(project: Path) -> None:
    urn = f"urn:fss:cn-north-4:{PROJECT_ID}:function:shop:remote-name"
    (fn,) = load_config(write(project, HEADER + HELLO + f'urn = "{urn}"\n')).functions
    assert fn.urn == urn + ":latest"
    assert fn.package == "shop"
    (fn,) = load_config(write(project, HEADER + HELLO + f'urn = "{urn}:latest"\n')).functions
    assert fn.urn == urn + ":latest"


def test_endpoints_without_region_need_a_urn_per_function(project: Path) -> None:
    endpoints = 'endpoint = "http://127.0.0.1:1"\niam_endpoint = "http://127.0.0.1:2"\n'
    urn = f"urn:fss:cn-east-3:{PROJECT_ID}:function:default:hello:latest"
    config = load_config(write(project, f'project_id = "{PROJECT_ID}"\n{endpoints}{HELLO}urn = "{urn}"\n'))
    assert config.region is None
    assert config.functions[0].urn == urn
    message = problems(project, f'project_id = "{PROJECT_ID}"\n{endpoints}{HELLO}')
    assert message == (
        "fgsync.toml: function[1].urn is missing: required when region is not set (the default URN needs a region)"
    )


# --- one message per mistake -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            f'project_id = "{PROJECT_ID}"\n' + HELLO,
            'fgsync.toml: region is missing: required (a region id such as "cn-north-4") unless both endpoint and '
            "iam_endpoint are given",
        ),
        (
            f'region = "North-4"\nproject_id = "{PROJECT_ID}"\n' + HELLO,
            'fgsync.toml: region = "North-4": must be a region id such as "cn-north-4"',
        ),
        (
            f'region = "{REGION}"\n' + HELLO,
            "fgsync.toml: project_id is missing: must be 32 letters and digits (the project id of the region)",
        ),
        (
            f'region = "{REGION}"\nproject_id = "abc-123"\n' + HELLO,
            'fgsync.toml: project_id = "abc-123": must be 32 letters and digits (the project id of the region)',
        ),
        (
            HEADER + 'endpoint = "ftp://example.com"\n' + HELLO,
            'fgsync.toml: endpoint = "ftp://example.com": must be an http:// or https:// URL such as '
            '"https://functiongraph.cn-north-4.myhuaweicloud.com"',
        ),
        (
            HEADER + 'iam_endpoint = "http://iam.example.com"\n' + HELLO,
            'fgsync.toml: iam_endpoint = "http://iam.example.com": must be https://; plain http:// is only for a '
            "local emulator on 127.0.0.1, ::1 or localhost",
        ),
        (
            HEADER + "iam_endpoint = 8080\n" + HELLO,
            "fgsync.toml: iam_endpoint = 8080: must be an http:// or https:// URL such as "
            '"https://functiongraph.cn-north-4.myhuaweicloud.com"',
        ),
        (
            HEADER + '[auth]\nmethod = "password"\n' + HELLO,
            'fgsync.toml: auth.method = "password": must be "token" or "aksk"',
        ),
        (
            HEADER + '[auth]\nuser = ""\n' + HELLO,
            'fgsync.toml: auth.user = "": must be an IAM user name (a non-empty string)',
        ),
        (
            HEADER + "[watch]\ndebounce_ms = -1\n" + HELLO,
            "fgsync.toml: watch.debounce_ms = -1: must be an integer >= 0 (milliseconds)",
        ),
        (
            HEADER + "[watch]\ndebounce_ms = true\n" + HELLO,
            "fgsync.toml: watch.debounce_ms = true: must be an integer >= 0 (milliseconds)",
        ),
        (
            HEADER + "[watch]\nmax_wait_ms = 2.5\n" + HELLO,
            "fgsync.toml: watch.max_wait_ms = 2.5: must be an integer >= 0 (milliseconds)",
        ),
        (
            HEADER + "[watch]\ndebounce_ms = 500\nmax_wait_ms = 100\n" + HELLO,
            "fgsync.toml: watch.max_wait_ms = 100: must be >= watch.debounce_ms (500)",
        ),
        (
            HEADER + '[watch]\npoll = "yes"\n' + HELLO,
            'fgsync.toml: watch.poll = "yes": must be true or false (a TOML boolean, no quotes)',
        ),
        (
            HEADER + 'watch = "fast"\n' + HELLO,
            'fgsync.toml: watch = "fast": must be a table: write [watch] on its own line, then its keys',
        ),
        (
            HEADER,
            "fgsync.toml: function is missing: at least one [[function]] table (with name and source) is required",
        ),
        (
            HEADER + "function = []\n",
            "fgsync.toml: function = []: at least one [[function]] table (with name and source) is required",
        ),
        (
            HEADER + '[function]\nname = "hello"\nsource = "functions/hello"\n',
            'fgsync.toml: function = {name = "hello", source = "functions/hello"}: must be an array of tables: '
            "write [[function]] (double brackets) before each function's keys",
        ),
        (
            HEADER + '[[function]]\nsource = "functions/hello"\n',
            "fgsync.toml: function[1].name is missing: must be letters, digits, - and _ (the local name used on the "
            "command line)",
        ),
        (
            HEADER + '[[function]]\nname = "hello world"\nsource = "functions/hello"\n',
            'fgsync.toml: function[1].name = "hello world": must be letters, digits, - and _ (the local name used '
            "on the command line)",
        ),
        (
            HEADER + HELLO + HELLO,
            'fgsync.toml: function[2].name = "hello": must be unique; function[1] already uses it',
        ),
        (
            HEADER + '[[function]]\nname = "hello"\n',
            "fgsync.toml: function[1].source is missing: must be an existing folder, relative to the folder of "
            "fgsync.toml",
        ),
        (
            HEADER + HELLO + "use_gitignore = 1\n",
            "fgsync.toml: function[1].use_gitignore = 1: must be true or false (a TOML boolean, no quotes)",
        ),
        (
            HEADER + HELLO + 'exclude = "*.md"\n',
            'fgsync.toml: function[1].exclude = "*.md": must be an array of non-empty strings '
            "(gitignore-style patterns)",
        ),
        (
            HEADER + HELLO + "depend_version_list = [1, 2]\n",
            "fgsync.toml: function[1].depend_version_list = [1, 2]: must be an array of non-empty strings "
            "(dependency version ids)",
        ),
        (
            HEADER + HELLO + 'code_type = "jar"\n',
            'fgsync.toml: function[1].artifact is missing: required when code_type = "jar": the jar file to upload',
        ),
        (
            HEADER + HELLO + 'artifact = "app.jar"\n',
            'fgsync.toml: function[1].artifact = "app.jar": only allowed with code_type = "jar"; a zip function '
            "packages its source folder",
        ),
        (
            HEADER + HELLO + 'code_filename = "dist/index.zip"\n',
            'fgsync.toml: function[1].code_filename = "dist/index.zip": must be a file name such as "index.zip", '
            "without folders",
        ),
        (
            HEADER + HELLO + 'package = "my package"\n',
            'fgsync.toml: function[1].package = "my package": must be a package name: letters, digits, - and _',
        ),
        (
            HEADER + HELLO + 'build = "  "\n',
            'fgsync.toml: function[1].build = "  ": must be a shell command (a non-empty string)',
        ),
    ],
)
def test_bad_value_message(project: Path, body: str, expected: str) -> None:
    assert problems(project, body) == expected


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        ('"60"', '"60"'),
        ("true", "true"),
        ("0", "0"),
        ("-5", "-5"),
        ("0.0", "0.0"),
        ("nan", "nan"),
        ("inf", "inf"),
        ("[60]", "[60]"),
    ],
)
def test_timeouts_must_be_positive_numbers_of_seconds(project: Path, line: str, shown: str) -> None:
    body = HEADER + f"request_timeout_s = {line}\n" + HELLO + f"build_timeout_s = {line}\n"
    assert problems(project, body) == (
        "fgsync.toml has 2 problems:\n"
        f"  fgsync.toml: request_timeout_s = {shown}: must be a number of seconds, > 0 and at most 3600\n"
        f"  fgsync.toml: function[1].build_timeout_s = {shown}: must be a number of seconds, > 0 and at most 86400"
    )


DEPS_ALLOWED = (
    'must be "off", "auto", or an array of gitignore-style patterns relative to source (such as '
    '["node_modules/", "vendor/"])'
)


@pytest.mark.parametrize("value", ['"auto"', '"off"', '["node_modules/"]', '["vendor/", "!vendor/mine/", "/lib*/"]'])
def test_dependencies_accepts_off_auto_and_patterns(project: Path, value: str) -> None:
    (fn,) = load_config(write(project, HEADER + HELLO + f"dependencies = {value}\n")).functions
    expected = value.strip('"') if value.startswith('"') else tuple(re.findall(r'"([^"]*)"', value))
    assert fn.dependencies == expected
    assert fn.has_dependencies == (expected != "off")


@pytest.mark.parametrize(
    ("value", "allowed"),
    [
        ('"on"', DEPS_ALLOWED),
        ('"AUTO"', DEPS_ALLOWED),
        ("true", DEPS_ALLOWED),
        ("3", DEPS_ALLOWED),
        ('["node_modules/", 3]', DEPS_ALLOWED),
        ("{auto = true}", DEPS_ALLOWED),
        (
            "[]",
            'an empty array names no files: list patterns such as ["node_modules/"], or write "auto", or "off" to '
            "package everything together",
        ),
        ('["../lib/"]', 'pattern "../lib/" leaves the source folder (..): patterns can only name files inside source'),
        (
            '["vendor/../../x"]',
            'pattern "vendor/../../x" leaves the source folder (..): patterns can only name files inside source',
        ),
        ('["!"]', "pattern \"!\" is not a valid gitignore-style pattern (Invalid git pattern: '!')"),
        ('["lib\\\\"]', "pattern \"lib\\\\\" is not a valid gitignore-style pattern (Invalid git pattern: 'lib\\\\')"),
        (
            '["./vendor/"]',
            'pattern "./vendor/" has a "." folder, which never matches in gitignore syntax: write "/vendor/"',
        ),
        ('[""]', 'pattern "" is blank: give a path pattern such as "node_modules/"'),
        (
            '["#deps"]',
            'pattern "#deps" is a comment in gitignore syntax and matches nothing (write \\# for a name '
            "starting with #)",
        ),
        (
            "['C:\\deps\\']",
            'pattern "C:\\\\deps\\\\" is an absolute path: patterns are relative to the function\'s source '
            'folder (such as "node_modules/"; a leading / anchors a pattern there, as in .gitignore)',
        ),
        (
            '["~/deps/"]',
            'pattern "~/deps/" is an absolute path: patterns are relative to the function\'s source '
            'folder (such as "node_modules/"; a leading / anchors a pattern there, as in .gitignore)',
        ),
    ],
)
def test_bad_dependencies_name_the_key_the_value_and_what_is_allowed(project: Path, value: str, allowed: str) -> None:
    message = problems(project, HEADER + HELLO + f"dependencies = {value}\n")
    assert message.startswith("fgsync.toml: function[1].dependencies = ")
    assert message.endswith(": " + allowed)


def test_a_dependencies_pattern_spelling_out_the_source_path_is_absolute(project: Path) -> None:
    full = (project / "functions" / "hello" / "node_modules").as_posix()
    message = problems(project, HEADER + HELLO + f'dependencies = ["{full}/"]\n')
    assert message == (
        f'fgsync.toml: function[1].dependencies = ["{full}/"]: pattern "{full}/" is an absolute path: patterns are '
        'relative to the function\'s source folder (such as "node_modules/"; a leading / anchors a pattern there, '
        "as in .gitignore)"
    )


def test_every_bad_dependencies_pattern_is_its_own_problem(project: Path) -> None:
    message = problems(project, HEADER + HELLO + 'dependencies = ["ok/", "../a", "!"]\n')
    lines = message.splitlines()
    assert lines[0] == "fgsync.toml has 2 problems:"
    assert [line.split(": pattern ")[1].split(" ")[0] for line in lines[1:]] == ['"../a"', '"!"']


def test_dependencies_are_for_zip_functions_only(project: Path) -> None:
    body = HEADER + HELLO + 'code_type = "jar"\nartifact = "app.jar"\ndependencies = "auto"\n'
    assert problems(project, body) == (
        'fgsync.toml: function[1].dependencies = "auto": only allowed with code_type = "zip": a jar function uploads '
        "its artifact as it is"
    )
    body = HEADER + HELLO + 'code_type = "jar"\nartifact = "app.jar"\ndependencies = "off"\n'
    assert load_config(write(project, body)).functions[0].dependencies == "off"


def test_timeouts_have_a_sane_maximum(project: Path) -> None:
    assert load_config(write(project, HEADER + "request_timeout_s = 3600\n" + HELLO)).request_timeout_s == 3600
    assert problems(project, HEADER + "request_timeout_s = 6000\n" + HELLO) == (
        "fgsync.toml: request_timeout_s = 6000: must be a number of seconds, > 0 and at most 3600"
    )
    body = HEADER + HELLO + "build_timeout_s = 86401\n"
    assert problems(project, body) == (
        "fgsync.toml: function[1].build_timeout_s = 86401: must be a number of seconds, > 0 and at most 86400"
    )


def test_timeout_keys_are_not_accepted_in_the_wrong_table(project: Path) -> None:
    assert problems(project, HEADER + "build_timeout_s = 60\n" + HELLO) == (
        'fgsync.toml: build_timeout_s: unknown key; did you mean "request_timeout_s"?'
    )


def test_the_brief_example_line(project: Path) -> None:
    body = HEADER + HELLO + '[[function]]\nname = "two"\nsource = "functions/hello"\ncode_type = "tar"\n'
    assert problems(project, body) == 'fgsync.toml: function[2].code_type = "tar": must be "zip" or "jar"'


def test_source_must_be_an_existing_folder(project: Path) -> None:
    (project / "file.txt").write_text("x")
    message = problems(project, HEADER + '[[function]]\nname = "a"\nsource = "file.txt"\n')
    assert message == (
        'fgsync.toml: function[1].source = "file.txt": must be an existing folder, relative to the folder of '
        f"fgsync.toml; {project / 'file.txt'} is not a folder"
    )
    message = problems(project, HEADER + '[[function]]\nname = "a"\nsource = "missing"\n')
    assert message.endswith(f"{project / 'missing'} does not exist")


def test_ca_bundle_must_exist(project: Path) -> None:
    message = problems(project, HEADER + 'ca_bundle = "ca.pem"\n' + HELLO)
    assert message == (
        'fgsync.toml: ca_bundle = "ca.pem": must be a PEM file of extra CA certificates, relative to the folder '
        f"of fgsync.toml; {project / 'ca.pem'} does not exist"
    )


@pytest.mark.parametrize(
    ("urn", "allowed"),
    [
        (
            f"urn:fss:cn-north-4:{PROJECT_ID}:function:default:hello:3",
            "names a published version; only the latest version can be updated: end the URN with :latest or leave "
            "the version out",
        ),
        (
            f"urn:fss:cn-north-4:{PROJECT_ID}:function:default:hello:!prod",
            "names an alias; only the latest version can be updated: end the URN with :latest or leave the version out",
        ),
        ("hello", "must be a function URN urn:fss:<region>:<project_id>:function:<package>:<name>[:latest]"),
        (
            f"urn:fss:cn-north-4:{PROJECT_ID}:func:default:hello",
            "must be a function URN urn:fss:<region>:<project_id>:function:<package>:<name>[:latest]",
        ),
        (
            f"urn:fss:cn-north-4:{PROJECT_ID}:function:default:hel lo",
            "must be a function URN urn:fss:<region>:<project_id>:function:<package>:<name>[:latest]",
        ),
        ("urn:fss:cn-north-4:" + "f" * 32 + ":function:default:hello", f'must match project_id = "{PROJECT_ID}"'),
        (f"urn:fss:cn-east-3:{PROJECT_ID}:function:default:hello", f'must match region = "{REGION}"'),
    ],
)
def test_bad_urn(project: Path, urn: str, allowed: str) -> None:
    message = problems(project, HEADER + HELLO + f'urn = "{urn}"\n')
    assert message == f'fgsync.toml: function[1].urn = "{urn}": {allowed}'


def test_urn_package_must_agree_with_package(project: Path) -> None:
    urn = f"urn:fss:cn-north-4:{PROJECT_ID}:function:shop:hello"
    message = problems(project, HEADER + HELLO + f'urn = "{urn}"\npackage = "default"\n')
    assert message == f'fgsync.toml: function[1].urn = "{urn}": must match function[1].package = "default"'


def test_unknown_keys_suggest_the_close_match(project: Path) -> None:
    message = problems(project, HEADER + "regoin = 1\n[watch]\ndebounse_ms = 5\n" + HELLO + 'sourse = "x"\nzzz = 1\n')
    lines = message.splitlines()
    assert lines[0] == "fgsync.toml has 4 problems:"
    assert '  fgsync.toml: regoin: unknown key; did you mean "region"?' in lines
    assert '  fgsync.toml: watch.debounse_ms: unknown key; did you mean "debounce_ms"?' in lines
    assert '  fgsync.toml: function[1].sourse: unknown key; did you mean "source"?' in lines
    assert (
        "  fgsync.toml: function[1].zzz: unknown key; allowed keys: name, source, urn, package, code_type, "
        "code_filename, artifact, build, exclude, use_gitignore, depend_version_list, kms_key_id, invoke_event, "
        "build_timeout_s, dependencies"
    ) in lines


def test_a_secret_put_in_the_file_is_refused_without_echoing_it(project: Path) -> None:
    secret = "s3cr3t-value-never-echoed"
    message = problems(project, HEADER + f'[auth]\npassword = "{secret}"\n' + HELLO + f'token = "{secret}"\n')
    assert secret not in message
    assert "fgsync.toml: auth.password: unknown key; credentials never go in fgsync.toml" in message
    assert "fgsync.toml: function[1].token: unknown key; credentials never go in fgsync.toml" in message


def test_all_problems_are_collected_in_one_error(project: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(
            write(
                project,
                'region = "nowhere"\n[[function]]\nname = "a"\nsource = "nope"\n'
                'code_type = "tar"\n[[function]]\nname = "a"\n',
            )
        )
    lines = str(info.value).splitlines()
    assert lines[0] == "fgsync.toml has 6 problems:"
    keys = re.findall(r"^  fgsync\.toml: ([\w\[\].]+)", str(info.value), re.MULTILINE)
    assert keys == [
        "region",
        "project_id",
        "function[1].source",
        "function[1].code_type",
        "function[2].source",
        "function[2].name",
    ]
    assert info.value.key == keys[0]
    assert info.value.path == str(project / "fgsync.toml")
    assert isinstance(info.value, UsageError)


def test_long_values_are_shortened(project: Path) -> None:
    message = problems(project, HEADER + HELLO + f'code_type = "{"z" * 200}"\n')
    assert len(message) < 240
    assert message.endswith('...: must be "zip" or "jar"')


def test_file_outside_cwd_is_named_by_its_full_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    path = write(tmp_path, HEADER)
    with pytest.raises(ConfigError, match=f"^{re.escape(str(path))}: function is missing"):
        load_config(path)


# --- file-level errors ---------------------------------------------------------------------------------------


def test_toml_syntax_error_names_file_line_and_column(project: Path) -> None:
    message = problems(project, HEADER + 'endpoint = "C:\\q"\n')
    assert message == "fgsync.toml: line 3, column 17: invalid TOML: Unescaped '\\' in a string"
    message = problems(project, HEADER + "[[function]]\nname = ")
    assert message.startswith("fgsync.toml: line 4, column 8 (end of file): invalid TOML: ")


def test_not_utf8_and_missing_file(project: Path) -> None:
    (project / "fgsync.toml").write_bytes(b'region = "\xff"\n')
    with pytest.raises(ConfigError, match=r"^fgsync\.toml: not UTF-8 text \(byte 10\)$"):
        load_config(project / "fgsync.toml")
    with pytest.raises(ConfigError, match=r"^config file not found: other\.toml$"):
        load_config(project / "other.toml")


# --- select_functions --------------------------------------------------------------------------------------


def test_select_functions(project: Path) -> None:
    (project / "functions" / "api").mkdir()
    config = load_config(write(project, HEADER + HELLO + '[[function]]\nname = "api"\nsource = "functions/api"\n'))
    assert [fn.name for fn in select_functions(config, [])] == ["hello", "api"]
    assert [fn.name for fn in select_functions(config, ["api", "hello", "api"])] == ["api", "hello"]
    with pytest.raises(UsageError) as info:
        select_functions(config, ["helo", "zzz"])
    assert str(info.value) == (
        "unknown functions 'helo' (did you mean 'hello'?), 'zzz'; fgsync.toml defines: api, hello"
    )
    assert info.value.exit_code == EXIT_USAGE


# --- render_init and fgsync.toml.example -------------------------------------------------------------------


def _keys_in(text: str) -> set[str]:
    """Key names assigned on a line, commented or not (`# key = ...` or `key = ...`)."""
    return set(re.findall(r"^(?:# )?([a-z_]+) = ", text, re.MULTILINE))


def _tables_in(text: str) -> set[str]:
    return set(re.findall(r"^(?:# )?\[\[?([a-z_]+)\]\]?", text, re.MULTILINE))


def _all_keys() -> set[str]:
    return {key for table in SCHEMA.values() for key in table if key not in SCHEMA}


def test_render_init_with_values_loads_as_is(project: Path) -> None:
    text = render_init(
        region="eu-west-101", project_id=PROJECT_ID, functions=[("hello", "functions/hello"), ("api", 'odd "dir"\\x')]
    )
    (project / 'odd "dir"\\x').mkdir()
    assert _all_keys() <= _keys_in(text)
    assert {"auth", "watch", "function"} <= _tables_in(text)
    config = load_config(write(project, text))
    assert [fn.name for fn in config.functions] == ["hello", "api"]
    assert config.functions[1].source == project / 'odd "dir"\\x'
    assert config.iam_endpoint == "https://iam.eu-west-101.myhuaweicloud.eu"
    # Every line explains itself.
    assert all("#" in line for line in text.splitlines() if line and not line.startswith("["))


def test_render_init_without_values_fails_clearly_until_filled_in(project: Path) -> None:
    text = render_init(region=None, project_id=None, functions=[("hello", "functions/hello")])
    assert _all_keys() <= _keys_in(text)
    message = problems(project, text)
    assert "fgsync.toml: region is missing" in message
    assert "fgsync.toml: project_id is missing" in message
    assert "function[1].urn" not in message  # the real fix is region, not a URN per function
    filled = text.replace('# region = "cn-north-4"', 'region = "cn-north-4"', 1)
    filled = re.sub(
        r'^# project_id = "<32 letters and digits>"',
        f'project_id = "{PROJECT_ID}"',
        filled,
        count=1,
        flags=re.MULTILINE,
    )
    config = load_config(write(project, filled))
    assert config.functions[0].urn == f"urn:fss:cn-north-4:{PROJECT_ID}:function:default:hello:latest"


def test_render_init_uncommented_placeholder_project_id_is_an_error(project: Path) -> None:
    text = render_init(region="cn-north-4", project_id=None, functions=[("hello", "functions/hello")])
    message = problems(project, text.replace("# project_id", "project_id", 1))
    assert message.startswith('fgsync.toml: project_id = "<32 letters and digits>": must be 32 letters and digits')


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"region": "north"}, 'region "north" must be a region id such as "cn-north-4"'),
        ({"project_id": "123"}, 'project id "123" must be 32 letters and digits'),
        ({"functions": [("a b", "src")]}, 'function name "a b" must be letters, digits, - and _'),
        ({"functions": [("a", "x"), ("a", "y")]}, 'function name "a" is given twice'),
        ({"functions": [("a", " ")]}, 'function "a" needs a source folder'),
        ({"functions": []}, "at least one function is needed"),
    ],
)
def test_render_init_refuses_values_that_would_not_load(kwargs: dict[str, object], expected: str) -> None:
    args: dict[str, object] = {"region": None, "project_id": None, "functions": [("hello", "functions/hello")]}
    args.update(kwargs)
    with pytest.raises(UsageError) as info:
        render_init(**args)  # type: ignore[arg-type]
    assert str(info.value) == expected


def test_example_file_is_valid_and_shows_every_key(tmp_path: Path) -> None:
    text = (REPO_ROOT / "fgsync.toml.example").read_text()
    assert _all_keys() <= _keys_in(text)
    assert {"auth", "watch", "function"} <= _tables_in(text)
    (tmp_path / "functions" / "hello").mkdir(parents=True)
    (tmp_path / "functions" / "orders").mkdir(parents=True)
    config = load_config(write(tmp_path, text))
    assert [fn.name for fn in config.functions] == ["hello"]
    # The commented jar example is valid too once uncommented.
    head, _sep, jar = text.partition("# [[function]]\n")
    jar_block = "[[function]]\n" + re.sub(r"^# ", "", jar, flags=re.MULTILINE)
    config = load_config(write(tmp_path, head + jar_block))
    orders = config.functions[1]
    assert (orders.name, orders.code_type, orders.code_filename) == ("orders", "jar", "orders.jar")
    assert orders.artifact == tmp_path / "functions" / "orders" / "target" / "orders.jar"


def test_example_file_mirrors_the_spec_defaults(tmp_path: Path) -> None:
    text = (REPO_ROOT / "fgsync.toml.example").read_text()
    lines: dict[str, str] = {}
    for found in re.finditer(r"^# ([a-z_]+) = (\S+)", text, re.MULTILINE):
        lines.setdefault(found.group(1), found.group(2))  # the first: the commented defaults, not the jar example
    assert lines["method"] == '"token"'
    assert lines["debounce_ms"] == "300"
    assert lines["max_wait_ms"] == "3000"
    assert lines["poll"] == "false"
    assert lines["code_type"] == '"zip"'
    assert lines["code_filename"] == '"index.zip"'
    assert lines["package"] == '"default"'
    assert lines["use_gitignore"] == "false"
    assert lines["request_timeout_s"] == "60"
    assert lines["build_timeout_s"] == "600"
    assert lines["dependencies"] == '"off"'


@pytest.mark.parametrize(
    "url", ["http://localhost:8808", "http://127.0.0.2:1", "http://[::1]:8808", "https://x.example"]
)
def test_plain_http_is_for_loopback_emulators_only(project: Path, url: str) -> None:
    config = load_config(write(project, HEADER + f'endpoint = "{url}"\niam_endpoint = "{url}"\n' + HELLO))
    assert config.endpoint == config.iam_endpoint == url


# --- files that used to crash the loader (issue 9, item 12) ------------------------------------------------


def test_a_value_nested_too_deeply_is_a_config_error_not_a_traceback(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fgsync.cli import main

    write(project, HEADER + "a = " + "[" * 100_000 + "\n" + HELLO)
    assert main(["package"]) == EXIT_USAGE
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "Error: fgsync.toml: a value is nested too deeply (arrays or inline tables inside each other hundreds of "
        "levels deep); no key of fgsync.toml takes more than one level\n"
    )
    assert "Traceback" not in err


def test_a_deep_value_that_parses_is_shown_shortened(project: Path) -> None:
    message = problems(project, HEADER.replace('"cn-north-4"', "[" * 300 + "]" * 300) + HELLO)
    assert message.startswith("fgsync.toml: region = [[[[[[[[[...]]]]]]]]]: must be a region id")


# --- [obs] --------------------------------------------------------------------------------------------------


def test_obs_table_defaults_prefix_and_endpoint_from_the_region(project: Path) -> None:
    config = load_config(write(project, HEADER + '[obs]\nbucket = "my-fgsync-bucket"\n' + HELLO))
    assert config.obs is not None
    assert (config.obs.bucket, config.obs.prefix) == ("my-fgsync-bucket", "fgsync/")
    assert config.obs.endpoint == f"https://obs.{REGION}.myhuaweicloud.com"
    assert load_config(write(project, HEADER + HELLO)).obs is None


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('prefix = "x/"\n', "fgsync.toml: obs.bucket is missing: must be an OBS bucket name"),
        ('bucket = "My_Bucket"\n', 'fgsync.toml: obs.bucket = "My_Bucket": must be an OBS bucket name'),
        ('bucket = "a..b"\n', 'obs.bucket = "a..b": must not hold .., .- or -., nor look like an IP address'),
        ('bucket = "192.168.1.1"\n', "nor look like an IP address"),
        ('bucket = "ok-bucket"\nprefix = "/fgsync/"\n', 'obs.prefix = "/fgsync/": must be a key prefix'),
        (
            'bucket = "ok-bucket"\nendpoint = "https://obs.cn-east-3.myhuaweicloud.com"\n',
            "obs.endpoint = \"https://obs.cn-east-3.myhuaweicloud.com\": must be in the functions' region (cn-north-4)",
        ),
        (
            'bucket = "ok-bucket"\nendpoint = "http://obs.example.com"\n',
            'obs.endpoint = "http://obs.example.com": must be https://; plain http:// is only for a local emulator',
        ),
        ('bucket = "ok-bucket"\nregion = "x"\n', "obs.region: unknown key"),
    ],
)
def test_bad_obs_values_name_the_key_and_what_is_allowed(project: Path, body: str, expected: str) -> None:
    assert expected in problems(project, HEADER + "[obs]\n" + body + HELLO)


def test_obs_on_a_loopback_emulator_over_plain_http(project: Path) -> None:
    body = HEADER + '[obs]\nbucket = "dev"\nprefix = ""\nendpoint = "http://127.0.0.1:8808"\n' + HELLO
    config = load_config(write(project, body))
    assert config.obs is not None and (config.obs.prefix, config.obs.endpoint) == ("", "http://127.0.0.1:8808")
