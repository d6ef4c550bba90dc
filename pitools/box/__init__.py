"""The box: the Raspberry Pi that runs it all — the nightly runner, reports and the run index,
JupyterLab, the kernelspec, systemd services and the readiness check.

The top layer below the command line; nothing in pitools imports it except :mod:`pitools.cli`.
"""
