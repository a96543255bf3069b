"""A document-style evaluation set built from the dev faces (issue 17): ``python -m tools.docset``.

For each dev identity with two or more photos, one photo becomes a document portrait in four
sources (a plain portrait image, a chip DG2 with a JPEG or a JPEG 2000 inside, a printed and
scanned photo page), and another photo of the same person is the live capture. ``build`` writes
the files under ``var/docset/`` (never committed), deterministic for a seed; ``eval`` scores them
through the real docverify service and writes ``docs/accuracy-documents.md``'s numbers.
"""
