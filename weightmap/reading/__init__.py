"""The read stage: a checkpoint, a model file or a live model becomes a ``ParamGraph``.

``read.py`` (detection, the adapter that reads, live objects), ``modelfile.py`` (running
``model.py[:NAME]``), ``limits.py`` (read options and caps), ``statedict.py`` (a flat state dict
grouped into layers), ``dataflow.py`` (which layers feed which).
"""
