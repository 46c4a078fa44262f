"""The views of a run, each reading its :class:`~agentnb.record.RunRecord`: the chat
widget of a notebook cell (``widget``, made of ``header``, ``card`` and ``approval``;
its HTML from ``render``), the terminal view of ``agentnb run`` (``terminal``), and
the sanitising of untrusted output they share (``untrusted``)."""
