"""The commented fgsync.toml that `fgsync init` writes: every key shown, the optional ones commented out."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Optional

from fgsync.config import NAME_RE, PROJECT_ID_RE, REGION_RE, default_urn
from fgsync.errors import UsageError

# (key, example value, one-line explanation): the commented lines `fgsync init` writes for optional keys.
_TOP_DOCS = (
    ("endpoint", '"https://functiongraph.{region}.myhuaweicloud.com"', "default derived from region"),
    ("iam_endpoint", '"https://iam.{region}.myhuaweicloud.com"', "default derived from region"),
    ("ca_bundle", '"corp-ca.pem"', "extra CA file; TLS verification is never off"),
    (
        "request_timeout_s",
        "60",
        "longest one HTTP request may take (connect to last byte, plus its body at 100 KB/s); then a retryable "
        "network error",
    ),
)
_AUTH_DOCS = (
    ("method", '"token"', '"token" (IAM token in the OS keyring; default) or "aksk" (signed requests)'),
    ("user", '"dev-user"', "IAM user for `fgsync login`"),
    ("domain", '"my-account"', "account (domain) name for `fgsync login`"),
)
_WATCH_DOCS = (
    ("debounce_ms", "300", "quiet time that ends a burst of changes"),
    ("max_wait_ms", "3000", "a burst that never goes quiet is still pushed after this long"),
    ("poll", "false", "poll the file system instead of native events (network drives, WSL /mnt)"),
)
_OBS_DOCS = (
    ("bucket", '"my-fgsync-bucket"', "a bucket in the functions' region (docs/obs.md)"),
    ("prefix", '"fgsync/"', 'object keys start with this (default "fgsync/")'),
    ("endpoint", '"https://obs.{region}.myhuaweicloud.com"', "default derived from region"),
)
_FUNCTION_DOCS = (
    ("urn", '"{urn}"', "default built from region, project_id, package and name"),
    ("package", '"default"', "the FunctionGraph package (application) of the function"),
    ("code_type", '"zip"', '"zip" (default) or "jar"'),
    ("code_filename", '"index.zip"', "default: index.zip for zip, the artifact's file name for jar"),
    ("artifact", '"target/app.jar"', "jar only: the file to upload instead of zipping source"),
    ("build", '"mvn -q package"', "command run in source before packaging; its outputs never trigger a rebuild"),
    ("exclude", '["tests/", "*.md"]', "gitignore-style patterns, on top of .fgsyncignore and the built-in list"),
    ("use_gitignore", "false", "also apply source/.gitignore files"),
    ("depend_version_list", '["..."]', "dependency version ids; default: keep the function's current list"),
    ("kms_key_id", '"..."', "KMS key that encrypts the code"),
    ("invoke_event", '"events/{name}.json"', "the event for `fgsync invoke` and `watch --invoke`"),
    ("build_timeout_s", "600", "a build still running after this long is stopped and reported"),
    (
        "dependencies",
        '"off"',
        '"off" (default), "auto" (node_modules/, pip install -t . packages) or patterns such as ["vendor/"]: '
        "a dependency package uploaded once, not on every save",
    ),
)


def render_init(*, region: Optional[str], project_id: Optional[str], functions: Sequence[tuple[str, str]]) -> str:
    """A commented fgsync.toml for `fgsync init`: every key shown, optional ones commented out.

    Args:
        region: the region id, or None to write a commented placeholder the user fills in.
        project_id: the project id, or None to write a commented placeholder.
        functions: (name, source folder) pairs, at least one.

    Returns:
        The file's text. With region and project_id given it loads as-is once the source folders exist.

    Raises:
        UsageError: a value would make the file invalid (bad region, project id or name, duplicate name).
    """
    problems = []
    if region is not None and not REGION_RE.match(region):
        problems.append(f'region "{region}" must be a region id such as "cn-north-4"')
    if project_id is not None and not PROJECT_ID_RE.match(project_id):
        problems.append(f'project id "{project_id}" must be 32 letters and digits')
    if not functions:
        problems.append("at least one function is needed")
    names = [name for name, _source in functions]
    for index, (name, source) in enumerate(functions):
        if not NAME_RE.match(name):
            problems.append(f'function name "{name}" must be letters, digits, - and _')
        elif name in names[:index]:
            problems.append(f'function name "{name}" is given twice')
        if not source.strip():
            problems.append(f'function "{name}" needs a source folder')
    if problems:
        raise UsageError("; ".join(problems))
    shown_region = region or "cn-north-4"
    lines = [
        "# fgsync.toml: which FunctionGraph functions fgsync keeps in step with which folders.",
        "# Relative paths are relative to this file's folder. Lines starting with # are optional keys.",
        "",
    ]
    if region:
        lines.append(_doc_line(f"region = {_toml_str(region)}", "region id; endpoints and URNs derive from it"))
    else:
        lines.append(_doc_line('# region = "cn-north-4"', "FILL IN your region id and remove the leading #"))
    if project_id:
        lines.append(_doc_line(f"project_id = {_toml_str(project_id)}", "the project id: 32 letters and digits"))
    else:
        lines.append(
            _doc_line(
                '# project_id = "<32 letters and digits>"',
                "FILL IN the region's project id (My Credentials) and remove the leading #",
            )
        )
    lines += [_doc_line(f"# {k} = {v.format(region=shown_region)}", c) for k, v, c in _TOP_DOCS]
    lines += ["", "[auth]", *(_doc_line(f"# {k} = {v}", c) for k, v, c in _AUTH_DOCS)]
    lines += ["", "[watch]", *(_doc_line(f"# {k} = {v}", c) for k, v, c in _WATCH_DOCS)]
    lines += ["", _doc_line("# [obs]", "optional: packages too large for a direct upload go through OBS")]
    lines += [_doc_line(f"# {k} = {v.format(region=shown_region)}", c) for k, v, c in _OBS_DOCS]
    for name, source in functions:
        urn = default_urn(shown_region, project_id or "<project_id>", "default", name)
        lines += [
            "",
            "[[function]]",
            _doc_line(f"name = {_toml_str(name)}", "local name used on the command line; unique"),
            _doc_line(f"source = {_toml_str(source)}", "folder whose contents become the root of the zip"),
        ]
        lines += [_doc_line(f"# {k} = {v.format(urn=urn, name=name)}", c) for k, v, c in _FUNCTION_DOCS]
    return "\n".join(lines) + "\n"


def _doc_line(code: str, comment: str) -> str:
    return f"{code:<40} # {comment}"


def _toml_str(value: str) -> str:
    """A TOML basic string; JSON's escapes are valid TOML, except that DEL must be escaped too."""
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
