"""Learned lossless coding: the 3P parallel scan, integer CDFs of a logistic mixture, the range coder
and cache-then-crop inference (CALLIC / DLPR)."""
