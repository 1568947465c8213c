"""Reading the file: YAML → ``${VAR}`` interpolation → validation → cross-checks → Settings.

Every problem is reported as ``key.path: plain sentence`` — all of them at once, in one
:class:`~broadcaster.errors.ConfigError`, no traceback. Pydantic's error types are worded here
for people who edit YAML, not for people who read Python.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from ..errors import ConfigError
from .base import ChannelSettings
from .checks import cross_check
from .settings import Settings

DEFAULT_CONFIG_PATHS = ("config/broadcaster.yaml",)

# ---------------------------------------------------------------- environment interpolation

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(node: Any, env: dict[str, str], path: str = "", problems: list | None = None) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string; missing VARs are problems."""
    if problems is None:
        problems = []
    if isinstance(node, dict):
        return {k: interpolate(v, env, f"{path}.{k}" if path else str(k), problems) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate(v, env, f"{path}[{i}]", problems) for i, v in enumerate(node)]
    if isinstance(node, str) and "${" in node:

        def sub(m: re.Match) -> str:
            name, default = m.group(1), m.group(2)
            if name in env and env[name] != "":
                return env[name]
            if default is not None:
                return default
            problems.append((path, f"environment variable {name} is not set"))
            return ""

        return _VAR.sub(sub, node)
    return node


# ---------------------------------------------------------------- loading and error wording


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith("function-") or part in ("tagged-union",):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def _wording(err: ErrorDetails) -> str:
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    if kind in ("int_parsing", "int_type"):
        return "must be a whole number"
    if kind in ("float_parsing", "float_type"):
        return "must be a number"
    if kind in ("bool_parsing", "bool_type"):
        return "must be true or false"
    if kind in ("string_type",):
        return "must be a string"
    if kind in ("dict_type", "model_type"):
        return "must be a mapping (key: value)"
    if kind in ("list_type", "tuple_type"):
        return "must be a list"
    if kind == "literal_error":
        return "must be " + msg.removeprefix("Input should be ")
    return msg[0].lower() + msg[1:] if msg else kind


def problems_of(exc: ValidationError, prefix: str = "") -> list[tuple[str, str]]:
    out = []
    for err in exc.errors():
        path = _loc(err["loc"])
        full = f"{prefix}.{path}" if prefix and path else (prefix or path)
        out.append((full, _wording(err)))
    return out


def _validate_channels(raw: dict[str, Any], problems: list) -> dict[str, ChannelSettings]:
    from ..channels import registry  # channel kinds register their settings models

    out: dict[str, ChannelSettings] = {}
    if not isinstance(raw, dict):
        problems.append(("channels", "must be a mapping of channel name to settings"))
        return out
    for name, body in raw.items():
        path = f"channels.{name}"
        if not re.match(r"^[a-z0-9][a-z0-9_-]{0,62}$", str(name)):
            problems.append((path, "channel names use lowercase letters, digits, - and _"))
            continue
        if not isinstance(body, dict):
            problems.append((path, "must be a mapping (key: value)"))
            continue
        kind = body.get("kind")
        if kind is None:
            problems.append((f"{path}.kind", "required key is missing"))
            continue
        if not isinstance(kind, str):
            problems.append((f"{path}.kind", f"must be a string (one of {', '.join(registry.kinds())})"))
            continue
        cls = registry.channel_class(kind)
        if cls is None:
            problems.append((f"{path}.kind", f"unknown channel kind {kind!r} (one of {', '.join(registry.kinds())})"))
            continue
        try:
            out[name] = cls.Settings.model_validate(body)
        except ValidationError as exc:
            problems.extend(problems_of(exc, path))
    return out


def load_settings(data: dict[str, Any], *, env: dict[str, str] | None = None, source: str | None = None) -> Settings:
    """Validate a parsed YAML document. Raises :class:`ConfigError` listing every problem."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([("", "the configuration must be a mapping of keys (ledger, broker, channels, ...)")])
    problems: list[tuple[str, str]] = []
    data = interpolate(data, dict(os.environ) if env is None else env, problems=problems)
    raw_channels = data.pop("channels", {}) or {}
    channels = _validate_channels(raw_channels, problems)
    try:
        settings = Settings.model_validate({**data, "source": source})
    except ValidationError as exc:
        problems.extend(problems_of(exc))
        # drop the broken sections and cross-check the rest, so every problem shows in one run
        broken = {e["loc"][0] for e in exc.errors() if e["loc"]}
        try:
            partial = Settings.model_validate({k: v for k, v in data.items() if k not in broken})
            cross_check(partial.model_copy(update={"channels": channels}), problems,
                         set(raw_channels) if isinstance(raw_channels, dict) else set())
        except ValidationError:
            pass
        raise ConfigError(problems) from None
    settings = settings.model_copy(update={"channels": channels})
    cross_check(settings, problems, set(raw_channels) if isinstance(raw_channels, dict) else set())
    if problems:
        raise ConfigError(problems)
    return settings


def read_settings(path: str | os.PathLike | None = None, *, env: dict[str, str] | None = None) -> Settings:
    """Read the config file: ``path``, else ``$BROADCASTER_CONFIG``, else ``config/broadcaster.yaml``."""
    env = dict(os.environ) if env is None else env
    candidates = [path] if path else ([env["BROADCASTER_CONFIG"]] if env.get("BROADCASTER_CONFIG") else list(DEFAULT_CONFIG_PATHS))
    for candidate in candidates:
        p = Path(candidate)
        if p.is_file():
            try:
                data = yaml.safe_load(p.read_text(encoding="utf-8"))
            except yaml.YAMLError as exc:
                mark = getattr(exc, "problem_mark", None)
                where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
                raise ConfigError([(str(p), f"not valid YAML at {where}: {getattr(exc, 'problem', exc)}")]) from None
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError([(str(p), f"cannot read the file: {exc}")]) from None
            return load_settings(data, env=env, source=str(p.resolve()))
        if path or env.get("BROADCASTER_CONFIG"):
            raise ConfigError([(str(p), "no such file")])
    raise ConfigError(
        [("", "no configuration found: pass --config PATH, set BROADCASTER_CONFIG, or create config/broadcaster.yaml "
              "(config/demo.yaml is a working example)")]
    )
