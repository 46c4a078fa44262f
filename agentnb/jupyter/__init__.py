"""The notebook side: the ``%%agents`` magics, the session of a user kernel, the
run it watches, the cells it inserts and the analysis notebook it saves."""
