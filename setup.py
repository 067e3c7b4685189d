"""Build hook for the optional C kernel; all metadata lives in pyproject.toml.

``optional=True``: if the compiler is missing or fails, the build still succeeds and
kato_stream falls back to the pure-Python matcher (``kato_stream.core.kernel.AVAILABLE``).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "kato_stream.core._kernel",
            sources=["kato_stream/core/_kernel.c"],
            optional=True,
        )
    ]
)
