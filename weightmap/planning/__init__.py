"""The plan stage: a matching becomes a checked ``Plan`` (``plan.py``): graph passes before
matching, one conversion per matched layer pair, whole-plan passes after (``passes.py`` lists
them in order), the coverage checks.
"""
