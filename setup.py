"""Packaging: metadata lives in setup.cfg.

The SQL schema lives at the top level (``schema/``) for people reading the
repository; a built package carries a copy as ``matrixd/_schema`` so that a
non-editable install can create and upgrade databases.
"""

import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithSchema(build_py):
    def run(self) -> None:
        super().run()
        src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schema")
        dst = os.path.join(self.build_lib, "matrixd", "_schema")
        if os.path.isdir(src) and not self.dry_run:
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(src, dst)


setup(cmdclass={"build_py": BuildPyWithSchema})
