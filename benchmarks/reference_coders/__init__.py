"""Reference coders for ``benchmarks/coding_speed_vs_reference.py``: each backbone's coding computed the way its
authors' public code computes it, written here from reading that code (never copied), on the parameters of
ctrlic's own modules, so both sides run the same weights on the same images.

They exist to be timed against ctrlic's coders; nothing in ``ctrlic`` imports them.
"""
