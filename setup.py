# The cffi extension needs a setup.py hook; everything else is in pyproject.toml.
from setuptools import setup

setup(
    cffi_modules=["pod_stats/_ffi_build.py:ffibuilder"],
    # the extension uses only the stable ABI of Python 3.9 (_ffi_build.py's Py_LIMITED_API):
    # one wheel, tagged cp39-abi3, for every CPython from 3.9 on
    options={"bdist_wheel": {"py_limited_api": "cp39"}},
)
