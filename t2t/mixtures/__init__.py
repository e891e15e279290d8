"""Stage 2: named mixtures of tasks -> one seeded, resumable stream of examples.

:mod:`t2t.mixtures.spec` reads a mixture file, :mod:`t2t.mixtures.resolve` turns it into rates (seqio's
rules) and a held-out split that never leaks into training, :mod:`t2t.mixtures.stream` draws from it.
"""
