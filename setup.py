# The cffi extension needs a setup.py hook; everything else is in pyproject.toml.
from setuptools import setup

setup(cffi_modules=["pod_stats/_ffi_build.py:ffibuilder"])
