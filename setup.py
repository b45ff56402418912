"""Package list for the layout of the design card (core/ -> mailpipe.core, plugins/ -> mailpipe.plugins).

Everything else is in pyproject.toml; this only finds the sub-packages so that a new
plugin package needs no edit here.
"""

from setuptools import find_packages, setup

packages = [
    f"mailpipe.{top}" + (f".{sub}" if sub else "")
    for top in ("core", "plugins")
    for sub in ["", *find_packages(top)]
]
setup(packages=packages)
