"""Build hooks; all metadata lives in pyproject.toml.

* The C kernel ``kato_stream/core/_kernel.c`` is ``optional=True``: if the compiler is missing
  or fails, the build still succeeds and kato_stream falls back to the pure-Python matcher
  (``kato_stream.core.kernel.AVAILABLE``), about 100x slower.  A worker then refuses to start
  unless ``KATO_STREAM_PURE_PYTHON=1``; CI (``.ci/run``) and the image's builder stage
  (``deploy/Dockerfile``) fail when a wheel comes out without the compiled kernel.
* ``topics/`` (topic definitions and JSON schemas; the repository's copy is the source)
  goes into the wheel as package data, ``kato_stream/_topics/``: no top-level ``topics``
  directory in ``site-packages``, where another distribution could ship one too.
  ``kato_stream/topics.py`` reads ``kato_stream/_topics`` when it is there (an installed
  wheel) and the repository's ``topics/`` otherwise (a checkout, an editable install), so
  ``kato-stream topics create`` works from either.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
TOPICS = "topics"
PACKAGED = "kato_stream/_topics"  # where the wheel carries them (kato_stream/topics.py)


def _topic_files() -> list[str]:
    """``topics/**/*.json``, relative to the project (sorted: reproducible wheels)."""
    return sorted(p.relative_to(HERE).as_posix() for p in (HERE / TOPICS).rglob("*.json"))


def _packaged(rel: str) -> str:
    """Where ``topics/<x>`` goes in the build tree: ``kato_stream/_topics/<x>``."""
    return f"{PACKAGED}/{Path(rel).relative_to(TOPICS).as_posix()}"


class build_py_with_topics(build_py):  # noqa: N801 - a setuptools command class
    """``build_py`` that also copies ``topics/`` into the build tree as
    ``kato_stream/_topics/`` (not in editable mode: an editable install reads the
    repository's own ``topics/``)."""

    def run(self) -> None:
        super().run()
        if not getattr(self, "editable_mode", False):
            for rel in _topic_files():
                dest = Path(self.build_lib) / _packaged(rel)
                self.mkpath(str(dest.parent))
                self.copy_file(str(HERE / rel), str(dest))

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        out = list(super().get_outputs(include_bytecode))
        if not getattr(self, "editable_mode", False):
            out += [str(Path(self.build_lib) / _packaged(rel)) for rel in _topic_files()]
        return out

    def get_source_files(self) -> list[str]:  # the sdist carries them too
        return [*super().get_source_files(), *_topic_files()]


setup(
    ext_modules=[
        Extension(
            "kato_stream.core._kernel",
            sources=["kato_stream/core/_kernel.c"],
            optional=True,
        )
    ],
    cmdclass={"build_py": build_py_with_topics},
)
