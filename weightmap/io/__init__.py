"""Bytes and files, for every stage: outputs published whole (``atomic.py``), writes past the
page cache (``direct.py``), file spans and ``pread`` (``spans.py``), byte layout
(``bytes.py``), paths a file names (``paths.py``), zip archive checks (``zipcheck.py``),
source fingerprints and the YAML/TOML documents users write.
"""
