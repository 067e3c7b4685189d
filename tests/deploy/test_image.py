"""deploy/Dockerfile's build steps, checked statically (no Docker engine needed).

* builder stage: installs a compiler, copies ``setup.py`` and the C kernel's source, builds
  the dependency wheels (``.[rocksdb]``) and the kato-stream wheel, and fails the build when
  that wheel lacks the compiled kernel;
* runtime stage: the same pinned base, no compiler or build packages, no source copied from
  the context, installs only the builder's wheels (no index, binaries only) and checks the
  kernel loads, runs as a non-root user, keeps the entrypoint, command, volume and ports;
* build context: every file those COPY steps need exists and survives
  ``deploy/Dockerfile.dockerignore`` (Docker's matching: ``**``, a pattern excluding a
  directory excludes what is in it, ``!`` re-includes, the last match wins), while a host's
  compiled kernel and ``build/`` tree do not.

``docker build`` itself (a network, the base image) is not run here.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass, field
from functools import cache

import pytest

from .conftest import DEPLOY, ROOT

DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = DEPLOY / "Dockerfile.dockerignore"

#: Packages that compile: none may be installed in the runtime stage.
COMPILER_PACKAGES = frozenset(
    {
        "gcc", "g++", "cc", "c++", "clang", "make", "cmake", "build-essential", "libc6-dev",
        "libc-dev", "musl-dev", "python3-dev", "python-dev", "cython", "cython3", "rustc",
        "cargo", "gfortran", "binutils",
    }
)  # fmt: skip


@dataclass
class Instruction:
    cmd: str  # upper case
    args: str
    flags: dict[str, str] = field(default_factory=dict)  # --from=..., --mount=... (first word)


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[Instruction]

    def all(self, cmd: str) -> list[Instruction]:
        return [i for i in self.instructions if i.cmd == cmd]


def parse_dockerfile(text: str) -> list[Stage]:
    """Stages of a Dockerfile: line continuations joined, comments dropped, flags split off."""
    logical: list[str] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        logical.append(buf + line)
        buf = ""
    assert not buf, "the Dockerfile ends inside a continued line"
    stages: list[Stage] = []
    for line in logical:
        cmd, _, rest = line.partition(" ")
        cmd = cmd.upper()
        flags: dict[str, str] = {}
        if cmd in ("COPY", "ADD", "RUN"):
            while rest.startswith("--"):
                flag, _, rest = rest.partition(" ")
                key, _, value = flag[2:].partition("=")
                flags[key] = f"{flags[key]};{value}" if key in flags else value
                rest = rest.lstrip()
        if cmd == "FROM":
            words = rest.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else ""
            stages.append(Stage(words[0], name, []))
            continue
        assert stages, f"{cmd} before the first FROM"
        stages[-1].instructions.append(Instruction(cmd, rest.strip(), flags))
    return stages


@cache
def stages() -> dict[str, Stage]:
    parsed = parse_dockerfile(DOCKERFILE.read_text())
    return {s.name: s for s in parsed}


def final_stage() -> Stage:
    return parse_dockerfile(DOCKERFILE.read_text())[-1]


def copy_sources(ins: Instruction) -> tuple[list[str], str]:
    """Sources and destination of a COPY (shell or JSON form)."""
    args = ins.args
    words: list[str] = (
        [w.strip().strip('"') for w in args.strip("[]").split(",")]
        if args.startswith("[")
        else shlex.split(args)
    )
    return words[:-1], words[-1]


def installed_packages(run: str) -> set[str]:
    """Packages named by ``apt-get install`` / ``apk add`` / ``yum|dnf install`` in a RUN."""
    out: set[str] = set()
    for part in re.split(r"&&|;|\|\|", run):
        words = part.split()
        for i, w in enumerate(words):
            if (w in ("apt-get", "apt", "yum", "dnf") and "install" in words[i + 1 :]) or (
                w == "apk" and "add" in words[i + 1 :]
            ):
                verb = words.index("install" if w != "apk" else "add", i)
                out |= {x.split("=")[0] for x in words[verb + 1 :] if not x.startswith("-")}
                break
    return out


def python_checks(run: str) -> list[str]:
    """The ``python -c "..."`` programs a RUN executes after its first command (each must
    compile: a check that is a syntax error or merely echoed proves nothing)."""
    out = []
    for m in re.finditer(r'&&\s*python3?\s+-c\s+"([^"]*)"', run):
        compile(m.group(1), "<RUN python -c>", "exec")
        out.append(m.group(1))
    return out


# -- .dockerignore, with Docker's semantics -------------------------------------------------
def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """moby/patternmatcher's translation: ``**`` any number of directories, ``*`` and ``?``
    within one path element."""
    out = "^"
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            if i + 1 < len(pattern) and pattern[i + 1] == "*":
                i += 1
                if i + 1 < len(pattern) and pattern[i + 1] == "/":
                    i += 1
                    out += "(.*/)?"
                else:
                    out += ".*"
            else:
                out += "[^/]*"
        elif ch == "?":
            out += "[^/]"
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        else:
            out += re.escape(ch)
        i += 1
    return re.compile(out + "$")


@cache
def ignore_rules() -> tuple[tuple[bool, re.Pattern[str]], ...]:
    """(re-include?, regex) per rule of Dockerfile.dockerignore, in order."""
    rules = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pat = line[1:].strip() if negate else line
        pat = re.sub(r"/+", "/", pat.strip("/")) or "."
        rules.append((negate, _pattern_regex(pat)))
    return tuple(rules)


def excluded(path: str) -> bool:
    """Whether the build context leaves ``path`` (relative, ``/``-separated) out: the last
    rule matching the path or one of its parent directories decides."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: k + 1]) for k in range(len(parts))]
    out = False
    for negate, rx in ignore_rules():
        if any(rx.match(c) for c in candidates):
            out = not negate
    return out


def context_files(rel: str) -> list[str]:
    """Files of the repository under ``rel`` that a clean checkout has (git's view; without
    git, the files on disk outside caches)."""
    try:
        res = subprocess.run(
            ["git", "ls-files", "--", rel], cwd=ROOT, capture_output=True, text=True, check=True
        )
        files = [f for f in res.stdout.splitlines() if (ROOT / f).is_file()]
    except (OSError, subprocess.CalledProcessError):
        files = []
    if not files:
        base = ROOT / rel
        found = [base] if base.is_file() else [p for p in base.rglob("*") if p.is_file()]
        files = [
            p.relative_to(ROOT).as_posix()
            for p in found
            if "__pycache__" not in p.parts and not p.name.endswith((".pyc", ".so"))
        ]
    return sorted(files)


# -- tests --------------------------------------------------------------------------------
def test_two_stages_on_the_same_pinned_base() -> None:
    parsed = parse_dockerfile(DOCKERFILE.read_text())
    assert [s.name for s in parsed] == ["builder", "runtime"]
    builder, runtime = parsed
    assert builder.base == runtime.base, "builder and runtime must share the Python ABI"
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", runtime.base), runtime.base


def test_dockerignore_semantics() -> None:
    """The matcher itself, on the rules of this file."""
    assert excluded(".git/HEAD")
    assert excluded("kato_stream/core/__pycache__/kernel.cpython-311.pyc")
    assert excluded("kato_stream/core/_kernel.cpython-311-x86_64-linux-gnu.so")
    assert excluded("build/lib.linux-x86_64-cpython-311/kato_stream/core/_kernel.so")
    assert excluded("build/lib.linux-x86_64-cpython-311/kato_stream/core/kernel.py")
    assert excluded("kato_stream.egg-info/SOURCES.txt")
    assert not excluded("kato_stream/core/_kernel.c")
    assert not excluded("kato_stream/core/kernel.py")
    assert not excluded("kato_stream/stores/schema.sql")
    assert not excluded("topics/schemas/command.schema.json")
    assert not excluded("setup.py")
    rx = _pattern_regex("**/*.so")
    assert rx.match("a.so") and rx.match("x/y/a.so") and not rx.match("a.sox")
    assert _pattern_regex("a/*/c").match("a/b/c") and not _pattern_regex("a/*/c").match("a/b/d/c")


def test_builder_compiles_the_kernel_into_a_wheel() -> None:
    builder = stages()["builder"]
    pkgs = set().union(*(installed_packages(r.args) for r in builder.all("RUN")))
    assert "gcc" in pkgs and "libc6-dev" in pkgs, f"no compiler in the builder: {pkgs}"

    copied: list[str] = []
    steps: list[tuple[str, Instruction]] = []
    for ins in builder.instructions:
        if ins.cmd == "COPY":
            assert "from" not in ins.flags, "the builder builds from the context only"
            srcs, _dest = copy_sources(ins)
            copied += [s.rstrip("/") for s in srcs]
        steps.append(("|".join(copied), ins))
    assert "setup.py" in copied, "setup.py (the build hook of the C kernel) is not copied"
    assert any("kato_stream/core/_kernel.c" in context_files(c) for c in copied), (
        "the C source kato_stream/core/_kernel.c is not copied"
    )
    assert "topics" in copied, "topics/ (read by kato_stream/topics.py) is not copied"

    runs = [(before, ins.args) for before, ins in steps if ins.cmd == "RUN"]
    deps = [r for _b, r in runs if "pip wheel" in r and ".[rocksdb]" in r]
    assert deps, "no wheels of the dependencies (.[rocksdb])"
    pkg = [
        (b, r)
        for b, r in runs
        if "pip wheel" in r and "--no-deps" in r and re.search(r"\s\.(\s|$)", r)
    ]
    assert pkg, "no wheel of kato-stream itself"
    before, run = pkg[-1]
    for needed in ("setup.py", "kato_stream", "topics"):
        assert needed in before.split("|"), f"the package wheel is built before {needed} is copied"
    wheel_dir = re.search(r"--wheel-dir[= ](\S+)", run)
    assert wheel_dir is not None
    assert all(
        f"--wheel-dir {wheel_dir.group(1)}" in d or f"--wheel-dir={wheel_dir.group(1)}" in d
        for d in deps
    )
    # the build fails when the wheel lacks the compiled kernel (setup.py makes it optional)
    # or the topic files, which setup.py puts in the package (no top-level "topics")
    checks = python_checks(run)
    assert any("_kernel" in c and ".so" in c and "sys.exit" in c for c in checks), run
    assert any("'kato_stream/_topics/topics.json' in names" in c for c in checks), run
    assert not any("'topics/topics.json'" in c for c in checks), run


def test_runtime_installs_only_the_builders_wheels_without_a_compiler() -> None:
    runtime = final_stage()
    assert runtime.name == "runtime"
    for ins in runtime.all("RUN"):
        pkgs = installed_packages(ins.args)
        assert not pkgs & COMPILER_PACKAGES, f"compiler packages in the runtime: {pkgs}"
        assert "pip wheel" not in ins.args and "setup.py" not in ins.args
        assert not re.search(r"pip install[^&]*\s-e\s", ins.args), "editable install"
    for ins in runtime.all("COPY") + runtime.all("ADD"):
        assert ins.flags.get("from") == "builder", f"runtime copies from the context: {ins.args}"

    installs = [i for i in runtime.all("RUN") if "pip install" in i.args]
    assert len(installs) == 1, [i.args for i in installs]
    ins = installs[0]
    cmd = ins.args.split("&&")[0]
    assert "--no-index" in cmd and "--only-binary=:all:" in cmd, cmd
    links = re.search(r"--find-links[= ](\S+)", cmd)
    assert links is not None, cmd
    wheels = links.group(1)
    mounted = any(
        "type=bind" in m and "from=builder" in m and f"target={wheels}" in m
        for m in ins.flags.get("mount", "").split(";")
    )
    copied = any(
        copy_sources(c)[1].rstrip("/") == wheels.rstrip("/")
        for c in runtime.all("COPY")
        if c.flags.get("from") == "builder"
    )
    assert mounted or copied, f"{wheels} does not come from the builder stage"
    assert "kato-stream[rocksdb]" in cmd
    # the image fails to build if the kernel does not load in the runtime, or the package
    # does not find its topic files in kato_stream/_topics (the package data)
    checks = python_checks(ins.args)
    assert any("assert kernel.enabled()" in c or "assert kernel.AVAILABLE" in c for c in checks)
    assert any("topic_specs(" in c and "load_schema(" in c and "assert" in c for c in checks)
    assert any("TOPICS_DIR" in c and "'_topics'" in c and "assert" in c for c in checks)


def test_runtime_runs_as_a_non_root_user_with_the_entrypoint() -> None:
    runtime = final_stage()
    users = runtime.all("USER")
    assert users, "the runtime stage runs as root"
    user = users[-1].args.split(":")[0]
    assert user not in ("root", "0"), user
    created = " ".join(r.args for r in runtime.all("RUN"))
    uid = re.search(rf"useradd\b[^&]*--uid (\d+)[^&]*\b{re.escape(user)}\b", created)
    assert uid is not None and int(uid.group(1)) != 0, "the runtime user is not created"
    names = [i.cmd for i in runtime.instructions]
    assert names.index("USER") < names.index("ENTRYPOINT")
    assert runtime.all("ENTRYPOINT")[-1].args == '["kato-stream"]'
    assert runtime.all("CMD")[-1].args == '["worker"]'
    assert runtime.all("VOLUME")[-1].args == '["/data"]'
    assert set(runtime.all("EXPOSE")[-1].args.split()) == {"6066", "8000"}
    env = " ".join(e.args for e in runtime.all("ENV"))
    assert "KATO_STREAM_DATA_DIR=/data" in env


@pytest.mark.parametrize("stage", ["builder", "runtime"])
def test_context_holds_what_each_copy_needs(stage: str) -> None:
    for ins in stages()[stage].all("COPY"):
        if "from" in ins.flags:
            continue
        srcs, _dest = copy_sources(ins)
        for src in srcs:
            path = ROOT / src
            assert path.exists(), f"COPY {src}: not in the build context"
            assert not excluded(src), f"COPY {src}: excluded by {DOCKERIGNORE.name}"
            files = context_files(src)
            assert files, f"COPY {src}: nothing to copy"
            dropped = [f for f in files if excluded(f)]
            assert not dropped, f"COPY {src}: {DOCKERIGNORE.name} drops {dropped[:5]}"


def test_context_keeps_the_kernel_source_and_drops_build_output() -> None:
    for needed in (
        "setup.py",
        "pyproject.toml",
        "README.md",
        "kato_stream/core/_kernel.c",
        "topics/topics.json",
    ):
        assert (ROOT / needed).is_file() and not excluded(needed), needed
    for so in ROOT.glob("kato_stream/**/*.so"):  # a developer's in-place build
        assert excluded(so.relative_to(ROOT).as_posix()), so
    assert excluded("build") and excluded("dist")
