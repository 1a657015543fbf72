"""Checks a code package before anything is stored. Pure: bytes in, a verdict out.

`check_package` refuses what can never run (not a zip, too large, the handler's file missing);
`handler_warnings` names what will fail at the first call although the package is well formed (a
Python handler function the module does not define, a syntax error in it), for the caller to show.
"""

from __future__ import annotations

import ast
import difflib
import io
import stat
import zipfile
from dataclasses import dataclass

from nimbus.common.errors import InvalidArgument, TooLarge

MAX_ENTRIES = 10_000


@dataclass(frozen=True, slots=True)
class PackageLimits:
    max_zip_bytes: int
    max_unzipped_bytes: int


def handler_file(runtime: str, handler: str) -> str | None:
    """The file a handler names inside the zip; None when the runtime has no such rule."""
    if runtime == "python3.11":
        module = handler.rpartition(".")[0]
        return module.replace(".", "/") + ".py"
    if runtime == "nodejs20":
        return handler.rpartition(".")[0]  # index.handler → index(.js|.mjs|.cjs), checked below
    if runtime == "provided":
        return "bootstrap"
    return None


def check_package(zip_bytes: bytes, runtime: str, handler: str, limits: PackageLimits) -> None:
    if not zip_bytes:
        raise InvalidArgument("code.zip_base64: required, the base64 of a zip archive")
    if len(zip_bytes) > limits.max_zip_bytes:
        raise TooLarge(
            f"code.zip_base64: the zip is {len(zip_bytes) / 1048576:.1f} MiB, over the limit of "
            f"{limits.max_zip_bytes / 1048576:g} MiB (NIMBUS_MAX_ZIP_MB)"
        )
    try:
        archive = zipfile.ZipFile(io.BytesIO(zip_bytes))
    except zipfile.BadZipFile:
        raise InvalidArgument("code.zip_base64: not a zip archive") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_ENTRIES:
            raise InvalidArgument(
                f"code.zip_base64: {len(infos)} entries, over the limit of {MAX_ENTRIES}"
            )
        total = 0
        names = set()
        for info in infos:
            name = info.filename
            if (
                name.startswith("/")
                or "\\" in name
                or any(part == ".." for part in name.split("/"))
            ):
                raise InvalidArgument(
                    f"code.zip_base64: entry {name!r} has an absolute or '..' path"
                )
            if stat.S_ISLNK(info.external_attr >> 16):
                raise InvalidArgument(
                    f"code.zip_base64: entry {name!r} is a symlink, which is not allowed"
                )
            total += info.file_size
            names.add(name)
        if total > limits.max_unzipped_bytes:
            raise TooLarge(
                f"code.zip_base64: unzipped size {total / 1048576:.1f} MiB is over the limit of "
                f"{limits.max_unzipped_bytes / 1048576:g} MiB (NIMBUS_MAX_UNZIPPED_MB)"
            )
    wanted = handler_file(runtime, handler)
    if wanted is None:
        return
    if runtime == "nodejs20":
        candidates = {wanted + ext for ext in (".js", ".mjs", ".cjs")}
    else:
        candidates = {wanted}
    if not candidates & names:
        needed = " or ".join(sorted(candidates))
        nested = sorted(
            (n for n in names if any(n.endswith("/" + c) for c in candidates)),
            key=lambda n: (n.count("/"), n),
        )
        if nested:
            folder = nested[0][: -len(next(c for c in candidates if nested[0].endswith("/" + c)))]
            raise InvalidArgument(
                f"handler: {handler!r} needs {needed} at the top of the zip; it has "
                f"{nested[0]}: the zip holds the folder {folder} instead of its contents. "
                f"Zip what is inside it (cd {folder.rstrip('/')} && zip -r ../code.zip .), "
                f"or give `nimbus deploy --src` the folder itself"
            )
        raise InvalidArgument(f"handler: {handler!r} needs {needed} in the zip, which is not there")


def handler_warnings(zip_bytes: bytes, runtime: str, handler: str) -> list[str]:
    """What will fail at the first call of a package `check_package` accepted. Python only: the
    module's file is parsed (never run) and must define the handler's name at its top level, by a
    def, an assignment or an import. Pure."""
    if runtime != "python3.11":
        return []
    wanted = handler_file(runtime, handler)
    if wanted is None:
        return []
    function = handler.rpartition(".")[2]
    try:
        with zipfile.ZipFile(io.BytesIO(zip_bytes)) as archive:
            source = archive.read(wanted)
    except (KeyError, zipfile.BadZipFile):
        return []
    try:
        tree = ast.parse(source, filename=wanted)
    except SyntaxError as e:
        where = f"{wanted}, line {e.lineno}" + (f", column {e.offset}" if e.offset else "")
        return [
            f"handler: {where}: SyntaxError: {e.msg}; every call will fail with "
            "Runtime.UserCodeSyntaxError until the code is fixed"
        ]
    except ValueError as e:  # null bytes, bad encoding
        return [f"handler: {wanted} cannot be parsed as Python: {e}"]
    names, open_ended = top_level_names(tree)
    if function in names or open_ended:
        return []
    functions = sorted(n for n, kind in names.items() if kind == "function")
    message = f"handler: {wanted} has no top-level def, assignment or import of {function!r}"
    close = difflib.get_close_matches(function, functions, n=1)
    if close:
        message += f" (did you mean {module_of(handler)}.{close[0]}?)"
    elif functions:
        message += f" (its functions: {', '.join(functions[:10])})"
    return [
        message + "; every call will fail with Runtime.HandlerNotFound until handler names "
        "a function the module defines"
    ]


def module_of(handler: str) -> str:
    return handler.rpartition(".")[0]


def top_level_names(tree: ast.Module) -> tuple[dict[str, str], bool]:
    """The names a module binds at its top level (also inside top-level if/try/with blocks), each
    "function" or "other"; and True when it may bind names no parse can see (`from m import *`, a
    module `__getattr__`, assignments into `globals()`)."""
    names: dict[str, str] = {}
    open_ended = False

    def bind(target: ast.expr) -> None:
        if isinstance(target, ast.Name):
            names.setdefault(target.id, "other")
        elif isinstance(target, ast.Tuple | ast.List):
            for element in target.elts:
                bind(element)
        elif isinstance(target, ast.Starred):
            bind(target.value)
        elif isinstance(target, ast.Subscript):
            nonlocal open_ended
            open_ended = True  # globals()["handler"] = ...

    def visit(body: list[ast.stmt]) -> None:
        nonlocal open_ended
        for node in body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                names[node.name] = "function"
                if node.name == "__getattr__":
                    open_ended = True
            elif isinstance(node, ast.ClassDef):
                names.setdefault(node.name, "other")
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    bind(target)
            elif isinstance(node, ast.AnnAssign | ast.AugAssign):
                bind(node.target)
            elif isinstance(node, ast.Import | ast.ImportFrom):
                for alias in node.names:
                    if alias.name == "*":
                        open_ended = True
                    else:
                        names.setdefault(alias.asname or alias.name.split(".")[0], "other")
            elif isinstance(node, ast.If | ast.For | ast.While):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.With):
                visit(node.body)
            elif isinstance(node, ast.Try | ast.TryStar):
                visit(node.body)
                for h in node.handlers:
                    visit(h.body)
                visit(node.orelse)
                visit(node.finalbody)
            elif isinstance(node, ast.Expr):
                # exec(...) or globals().update(...) at the top level: anything may be bound.
                call = node.value
                if isinstance(call, ast.Call):
                    f = call.func
                    if isinstance(f, ast.Name) and f.id == "exec":
                        open_ended = True
                    if isinstance(f, ast.Attribute) and f.attr in ("update", "setdefault"):
                        open_ended = True

    visit(tree.body)
    return names, open_ended
