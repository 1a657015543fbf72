"""Renders the supervisord.conf of a cluster from its spec, ports and environment."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from nimbus.cluster.layout import REPO, Layout
from nimbus.cluster.spec import ClusterSpec, Program

# supervisord program settings shared by every program (see DESIGN.md "Known traps": a crash
# restarts only the process that died; a crash loop backs off).
PROGRAM_DEFAULTS = {
    "autostart": "true",
    "autorestart": "true",
    "startsecs": "1",
    "startretries": "100",
    "stopsignal": "TERM",
    "stopwaitsecs": "15",
    "stopasgroup": "true",
    "killasgroup": "true",
    "redirect_stderr": "true",
    "stdout_logfile_maxbytes": "50MB",
    "stdout_logfile_backups": "2",
}
STOP_WAIT_S = int(PROGRAM_DEFAULTS["stopwaitsecs"])

_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class RenderError(ValueError):
    pass


@dataclass(frozen=True)
class Context:
    layout: Layout
    ports: Mapping[str, int]
    gateway_port: int
    binaries: Mapping[str, str]
    python: str
    # Each service's Redis URL (its ACL user on the socket), by service name.
    redis_urls: Mapping[str, str] = field(default_factory=dict)

    def variables(self, program: Program) -> dict[str, object]:
        return {
            "bin": dict(self.binaries),
            "python": self.python,
            "home": str(self.layout.home),
            "run": str(self.layout.run),
            "logs": str(self.layout.logs),
            "repo": str(REPO),
            "port": dict(self.ports),
            "gateway_port": self.gateway_port,
            "name": program.name,
            "replica": program.replica,
            "self_port": self.ports.get(program.name, ""),
            "redis_url": self.redis_urls.get(program.base, ""),
            # The program's own per-replica ports by suffix: "{name}-http" -> {own_port[http]}.
            "own_port": {
                port[len(program.name) + 1 :]: self.ports[port]
                for port in program.ports
                if port.startswith(program.name + "-") and port in self.ports
            },
        }


def _format(template: str, variables: Mapping[str, object], where: str) -> str:
    try:
        return template.format(**variables)
    except (KeyError, IndexError, ValueError, AttributeError) as err:
        raise RenderError(f"{where}: cannot fill {template!r}: {err!r}") from None


def command(program: Program, ctx: Context) -> list[str]:
    """The program's argv."""
    variables = ctx.variables(program)
    return [_format(word, variables, program.name) for word in shlex.split(program.command)]


def environment(
    program: Program,
    ctx: Context,
    spec: ClusterSpec,
    launcher_env: Mapping[str, str],
    extra_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """What the program gets on top of supervisord's environment.

    A service: the launcher's NIMBUS_*/OTEL_* variables (those supervisord can carry), then
    extra_env, then [service_env]; every program: its own `env` last.
    """
    variables = ctx.variables(program)
    env: dict[str, str] = {}
    if program.service:
        for key, value in launcher_env.items():
            # a variable supervisord cannot carry is left out rather than mangled
            if (
                key.startswith(spec.pass_env_prefixes)
                and _ENV_KEY.match(key)
                and not unpassable(value)
            ):
                env[key] = value
        env.update(extra_env or {})
        for key, template in spec.service_env.items():
            env[key] = _format(template, variables, f"{program.name} env {key}")
    for key, template in program.env.items():
        env[key] = _format(template, variables, f"{program.name} env {key}")
    return env


def unpassable(value: str) -> str:
    """Why supervisord's environment= cannot carry value unchanged ("" when it can)."""
    if value and (value[0] in "\"'" or value[-1] in "\"'"):
        return "starts or ends with a quote, which supervisord strips"
    if '"' in value and "'" in value:
        return "holds both quote characters"
    if "\n" in value or "\r" in value or re.search(r"\s[;#]", value):
        return "holds a line break or ' ;' / ' #', which end a value in supervisord.conf"
    return ""


def _value(text: str, what: str) -> str:
    """A value safe in supervisord's ini file: no line breaks or inline comments, % escaped."""
    if "\n" in text or "\r" in text:
        raise RenderError(f"{what}: line breaks cannot go into supervisord.conf")
    if re.search(r"\s[;#]", text):
        raise RenderError(
            f"{what}: ' ;' or ' #' would start a comment in supervisord.conf: {text!r}"
        )
    return text.replace("%", "%%")


def _env_pairs(env: Mapping[str, str], program: str) -> str:
    pairs = []
    for key, value in env.items():
        if not _ENV_KEY.match(key):
            raise RenderError(f"{program}: environment variable name {key!r} is not usable")
        problem = unpassable(value)
        if problem:
            raise RenderError(f"{program}: {key} {problem}")
        quoted = f'"{value}"' if '"' not in value else f"'{value}'"
        pairs.append(f"{key}={quoted}")
    return _value(",".join(pairs), f"{program} environment")


def supervisord_conf(
    spec: ClusterSpec,
    ctx: Context,
    launcher_env: Mapping[str, str],
    extra_env: Mapping[str, str] | None = None,
    only: Iterable[str] | None = None,
) -> str:
    layout = ctx.layout
    chosen = set(spec.names if only is None else only)
    sock = _value(str(layout.socket), "socket")
    lines = [
        "; Generated by nimbus.cluster from deploy/local/cluster.toml; edits are overwritten.",
        "[supervisord]",
        "nodaemon=true",
        "silent=true",
        f"logfile={_value(str(layout.logs / 'supervisord.log'), 'logfile')}",
        "logfile_maxbytes=10MB",
        "logfile_backups=2",
        f"pidfile={_value(str(layout.supervisord_pid), 'pidfile')}",
        f"childlogdir={_value(str(layout.logs), 'childlogdir')}",
        f"directory={_value(str(layout.home), 'directory')}",
        "",
        "[unix_http_server]",
        f"file={sock}",
        "chmod=0700",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{sock}",
        "",
    ]
    for program in spec.programs:
        if program.name not in chosen:
            continue
        argv = " ".join(shlex.quote(word) for word in command(program, ctx))
        lines += [
            f"[program:{program.name}]",
            f"command={_value(argv, program.name + ' command')}",
            f"directory={_value(str(layout.home), 'directory')}",
            f"priority={program.priority}",
            *(f"{k}={v}" for k, v in PROGRAM_DEFAULTS.items()),
            f"stdout_logfile={_value(str(layout.log(program.name)), 'log')}",
        ]
        env = environment(program, ctx, spec, launcher_env, extra_env)
        if env:
            lines.append(f"environment={_env_pairs(env, program.name)}")
        lines.append("")
    return "\n".join(lines)
