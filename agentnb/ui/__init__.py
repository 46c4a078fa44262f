"""The notebook front end: the chat widget (ipywidgets) and the pure HTML rendering it uses."""
