"""The emit stage: the target's format written by its adapter (``dispatch.py``), read back and
checked (``readback.py``), the manifest (``manifest.py``), the report (``report*.py``) and the
progress line.
"""
